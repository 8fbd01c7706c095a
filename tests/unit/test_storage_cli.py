"""``byzerllm storage start`` / ``info`` through Click's runner (no Ray: --enable_emb is not used)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from byzerllm.apps.byzer_storage import ByzerStorage, DataType, FieldOption
from byzerllm.cli.main import cli


def test_start_creates_the_folder_and_info_lists_tables(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["storage", "start", "--base_dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "byzerai_store").is_dir() and str(tmp_path / "byzerai_store") in res.output

    s = ByzerStorage("byzerai_store", "kb", "chunks", base_dir=str(tmp_path))
    s.schema_builder().add_field("content", DataType.STRING, [FieldOption.ANALYZE]).add_array_field(
        "vector", DataType.FLOAT
    ).execute()
    s.write_builder().add_items(
        [{"_id": str(i), "content": f"chunk {i}", "vector": [0.1 * i, 1.0, 0.0]} for i in range(5)],
        vector_fields=["vector"],
        search_fields=["content"],
    ).execute()
    res = runner.invoke(cli, ["storage", "info", "--base-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["location"] == str(tmp_path / "byzerai_store")
    (row,) = info["tables"]
    assert row["database"] == "kb" and row["table"] == "chunks" and row["rows"] == 5
    assert row["vector_fields"] == {"vector": 3} and row["fulltext_fields"] == ["content"]
    res = runner.invoke(cli, ["storage", "info", "--base_dir", str(tmp_path)])
    assert res.exit_code == 0 and "chunks" in res.output and "vector (3)" in res.output


def test_env_var_is_the_default_base_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BYZERLLM_STORAGE_DIR", str(tmp_path))
    res = CliRunner().invoke(cli, ["storage", "start", "--cluster", "team_a"])
    assert res.exit_code == 0 and (tmp_path / "team_a").is_dir()


def test_errors_are_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["storage", "info", "--base_dir", str(tmp_path / "none")])
    assert res.exit_code == 1 and "byzerllm storage start" in res.output
    res = runner.invoke(cli, ["storage", "start", "--base_dir", str(tmp_path), "--cluster", "../up"])
    assert res.exit_code == 1 and "cluster" in res.output
