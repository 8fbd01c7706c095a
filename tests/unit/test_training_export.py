"""GGUF export with llama.cpp's converter and the ``byzerllm export`` command, on a tiny random
Llama folder (no Ray); merge refusing what is not an adapter."""

from __future__ import annotations

import gguf
import pytest

from byzerllm.errors import InvalidRequestError, ModelPathError
from byzerllm.training.export import export_gguf, merge_lora

from ..conftest import run_cli


def test_a_model_folder_becomes_a_gguf_with_its_chat_template(tiny_llama, tmp_path):
    target = tmp_path / "tiny.gguf"
    assert export_gguf(str(tiny_llama), str(target), "f32") == str(target)
    reader = gguf.GGUFReader(target)
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "llama"
    assert "{% for message in messages %}" in bytes(fields["tokenizer.chat_template"].parts[-1]).decode()
    assert int(fields["llama.block_count"].parts[-1][0]) == 2
    assert not (tmp_path / "tiny.gguf.partial").exists()


def test_export_and_merge_refuse_what_is_not_a_model(tiny_llama, tmp_path):
    with pytest.raises(ModelPathError, match="no config.json"):
        export_gguf(str(tmp_path), str(tmp_path / "x.gguf"))
    with pytest.raises(InvalidRequestError, match="accepted: f32, f16, bf16, q8_0"):
        export_gguf(str(tiny_llama), str(tmp_path / "x.gguf"), "q2")  # type: ignore[arg-type]
    with pytest.raises(ModelPathError, match="not a LoRA adapter"):
        merge_lora(str(tiny_llama), str(tmp_path), str(tmp_path / "merged"))


def test_the_export_command_on_a_folder(tiny_llama, tmp_path):
    proc = run_cli(
        "export", str(tiny_llama), "--format", "gguf", "--outtype", "f16", "--output", str(tmp_path / "t.gguf")
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "t.gguf").read_bytes()[:4] == b"GGUF"
