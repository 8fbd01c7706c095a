"""``byzerllm.apps.byzer_storage.env`` behaves like Byzer-LLM's (apps/byzer_storage/env.py)."""

import sys

import pytest

from byzerllm.apps.byzer_storage.env import EnvInfo, detect_env, get_latest_byzer_retrieval_lib


def test_the_newest_retrieval_lib_folder_name_is_returned(tmp_path):
    # real: env.py::get_latest_byzer_retrieval_lib sorts by packaging's version, returns the last name
    for name in ["byzer-retrieval-lib-0.1.9", "byzer-retrieval-lib-0.1.11", "byzer-retrieval-lib-0.1.10", "other"]:
        (tmp_path / name).mkdir()
    assert get_latest_byzer_retrieval_lib(str(tmp_path)) == "byzer-retrieval-lib-0.1.11"


def test_names_that_are_not_x_y_z_versions_are_ignored(tmp_path):
    # real: env.py::get_latest_byzer_retrieval_lib, pattern ^byzer-retrieval-lib-(\d+\.\d+\.\d+)$
    for name in ["byzer-retrieval-lib-0.2", "byzer-retrieval-lib-0.2.0.tar.gz", "byzer-retrieval-lib-0.1.0"]:
        (tmp_path / name).mkdir()
    assert get_latest_byzer_retrieval_lib(str(tmp_path)) == "byzer-retrieval-lib-0.1.0"


def test_a_folder_without_a_retrieval_lib_gives_none(tmp_path):
    # real: env.py::get_latest_byzer_retrieval_lib, `return None` when no entry matches
    assert get_latest_byzer_retrieval_lib(str(tmp_path)) is None


def test_a_missing_folder_is_a_file_not_found_error(tmp_path):
    # real: env.py::get_latest_byzer_retrieval_lib calls os.listdir(directory)
    with pytest.raises(FileNotFoundError):
        get_latest_byzer_retrieval_lib(str(tmp_path / "none"))


def test_detect_env_describes_this_machine(monkeypatch, tmp_path):
    # real: env.py::detect_env, EnvInfo with sys.platform, the Python version and the env variables
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("VIRTUAL_ENV", "/venv")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    info = detect_env()
    assert isinstance(info, EnvInfo)
    assert info.os_name == sys.platform and info.python_version.startswith(f"{sys.version_info[0]}.")
    assert info.virtualenv == "/venv" and info.java_home is None and info.java_version == "0"
    assert info.cpu in ("x86_64", "arm64")


def test_detect_env_finds_a_jdk21_under_the_auto_coder_folder(monkeypatch, tmp_path):
    # real: env.py::detect_env, find_jdk21_from_dir(~/.auto-coder) sets java_home and java_version "21"
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".auto-coder" / "jdk-21.0.2").mkdir(parents=True)
    info = detect_env()
    assert info.java_version == "21" and "jdk-21.0.2" in info.java_home
