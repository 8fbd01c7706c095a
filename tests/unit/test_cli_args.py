from click.testing import CliRunner

from byzerllm.cli.main import cli


def test_unknown_flag_is_a_usage_error():
    result = CliRunner().invoke(cli, ["deploy", "--model", "m", "--bogus", "1"])
    assert result.exit_code == 2
    assert "No such option '--bogus'" in result.output


def test_infer_params_take_several_values_and_bad_pairs_are_named():
    result = CliRunner().invoke(cli, ["deploy", "--model", "m", "--infer_params", "a=1", "novalue"])
    assert result.exit_code == 1
    assert "--infer_params expects key=value pairs, got 'novalue'" in result.output


def test_help_lists_the_documented_flags():
    result = CliRunner().invoke(cli, ["deploy", "--help"])
    for flag in (
        "--model",
        "--pretrained_model_type",
        "--infer_backend",
        "--model_path",
        "--num_workers",
        "--worker_concurrency",
        "--cpus_per_worker",
        "--gpus_per_worker",
        "--infer_params",
    ):
        assert flag in result.output


def test_rag_query_on_a_store_never_built_is_named_and_creates_nothing(tmp_path):
    missing = tmp_path / "no_store"
    result = CliRunner().invoke(cli, ["rag", "query", "--query", "q", "--model", "m", "--base_dir", str(missing)])
    assert result.exit_code != 0 and "no document index in" in result.output + (result.stderr or "")
    assert not missing.exists()
