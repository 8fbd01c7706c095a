"""Training data formats, their errors, the assistant-only loss mask, and the hyper-parameters
read from Byzer-LLM's ``model_params``."""

from __future__ import annotations

import csv
import json

import pytest

from byzerllm.errors import InvalidRequestError, UnsupportedParameterError
from byzerllm.training.config import training_config
from byzerllm.training.data import DataFormatError, encode_chat, load_rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_the_three_chat_formats_become_the_same_messages(tmp_path):
    expected = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "What is 2+2?\nAnswer briefly."},
        {"role": "assistant", "content": "4"},
    ]
    write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"messages": expected},
            {
                "conversation": [
                    {"human": "hi", "assistant": "hello"},
                    {"human": expected[2]["content"], "assistant": "4"},
                ]
            },
            {"instruction": "What is 2+2?", "input": "Answer briefly.", "output": "4", "history": [["hi", "hello"]]},
        ],
    )
    assert load_rows(tmp_path, "sft") == [expected, expected, expected]


def test_system_messages_and_alpaca_without_input(tmp_path):
    write_jsonl(tmp_path / "data.jsonl", [{"system": "Be short.", "instruction": "Name a colour.", "output": "Red."}])
    assert load_rows(tmp_path / "data.jsonl", "sft") == [
        [
            {"role": "system", "content": "Be short."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Red."},
        ]
    ]


def test_parquet_csv_and_text_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"instruction": "a", "output": "b"}]), tmp_path / "one.parquet")
    with (tmp_path / "two.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["instruction", "input", "output", "history"])
        w.writeheader()
        w.writerow({"instruction": "c", "input": "", "output": "d", "history": json.dumps([["x", "y"]])})
    rows = load_rows(tmp_path, "sft")
    assert [m[-1]["content"] for m in rows] == ["b", "d"]
    assert rows[1][0] == {"role": "user", "content": "x"}
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("first document\n\nsecond document\n")
    write_jsonl(tmp_path / "corpus" / "b.jsonl", [{"text": "third"}])
    assert load_rows(tmp_path / "corpus", "pretrain") == ["first document", "second document", "third"]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"conversation": [{"human": "q", "assistant": 3}]}, "conversation[0].assistant"),
        ({"conversation": []}, "conversation"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "only a question"}]}, "messages"),
        ({"instruction": "q"}, "output"),
        ({"instruction": "q", "output": "a", "history": [["only one"]]}, "history[0]"),
        ({"question": "q", "answer": "a"}, "<row>"),
    ],
)
def test_a_bad_row_is_named_by_line_and_field(tmp_path, row, field):
    good = {"instruction": "q", "output": "a"}
    write_jsonl(tmp_path / "data.jsonl", [good, good, row])
    with pytest.raises(DataFormatError) as err:
        load_rows(tmp_path, "sft")
    assert err.value.details["line"] == 3 and err.value.details["field"] == field
    assert "line 3" in str(err.value) and field in str(err.value)


def test_bad_json_missing_data_and_pretraining_rows(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(DataFormatError, match="line 2: not JSON"):
        load_rows(tmp_path, "pretrain")
    write_jsonl(tmp_path / "data.jsonl", [{"text": "ok"}, {"body": "x"}])
    with pytest.raises(DataFormatError, match="line 2: field 'text' is missing"):
        load_rows(tmp_path, "pretrain")
    with pytest.raises(InvalidRequestError, match="not found") as err:
        load_rows(tmp_path / "nowhere", "sft")
    assert err.value.param == "local_data_dir_path"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidRequestError, match="no training data"):
        load_rows(tmp_path / "empty", "sft")


@pytest.fixture(scope="module")
def tokenizer():
    from byzerllm.training.models import load_tokenizer

    return load_tokenizer("builtin:smollm2")


def test_the_loss_mask_covers_the_assistant_turns_only(tokenizer):
    messages = [
        {"role": "user", "content": "Capital of Zubrowka?"},
        {"role": "assistant", "content": "Lutz."},
        {"role": "user", "content": "And its river?"},
        {"role": "assistant", "content": "The Vexo."},
    ]
    enc = encode_chat(tokenizer, messages, max_length=512)
    assert len(enc["input_ids"]) == len(enc["assistant_masks"])
    learned = tokenizer.decode([t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m])
    # both answers with their end-of-turn marker (so the model learns to stop), no user text
    assert learned.count("<|im_end|>") == 2
    assert "Lutz." in learned and "The Vexo." in learned
    assert "Zubrowka" not in learned and "river" not in learned
    # the text is the served chat template's rendering
    assert tokenizer.decode(enc["input_ids"]) == tokenizer.apply_chat_template(messages, tokenize=False)
    assert len(encode_chat(tokenizer, messages, max_length=10)["input_ids"]) == 10


def test_model_params_in_byzer_form():
    cfg = training_config(
        {
            "sft.int.max_seq_length": "256",
            "sft.float.learning_rate": 1e-3,
            "sft.bool.gradient_checkpointing": True,  # the real parser turned True into False
            "sft.str.method": "full",
            "sft.list.lora_target_modules": '["q_proj", "v_proj"]',
            "sfft.int.epoches": 3,
            "report_to": "tensorboard",  # the real package's keys with no use here are accepted
        },
        json_config='{"seed": 7, "learning_rate": 0.5}',
    )
    assert cfg.max_seq_length == 256 and cfg.learning_rate == 1e-3 and cfg.seed == 7
    assert cfg.gradient_checkpointing is True and cfg.method == "full" and cfg.num_train_epochs == 3
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert training_config().warmup_steps == 0  # Byzer-LLM's 3000 outlasts most runs


@pytest.mark.parametrize(
    ("params", "json_config", "error", "param"),
    [
        ({"sft.int.learning_rat": 1}, None, UnsupportedParameterError, "learning_rat"),
        ({"sft.int.max_seq_length": "many"}, None, InvalidRequestError, "sft.int.max_seq_length"),
        ({"sft.bool.packing": "yes"}, None, InvalidRequestError, "sft.bool.packing"),
        ({"sft.tuple.seed": 1}, None, InvalidRequestError, "sft.tuple.seed"),
        ({"sft.str.method": "dora"}, None, InvalidRequestError, "method"),
        ({"sft.float.learning_rate": -1}, None, InvalidRequestError, "learning_rate"),
        (None, "{not json", InvalidRequestError, "json_config"),
        (None, "[1, 2]", InvalidRequestError, "json_config"),
    ],
)
def test_bad_hyper_parameters_are_named(params, json_config, error, param):
    with pytest.raises(error) as err:
        training_config(params, json_config)
    assert err.value.param == param
