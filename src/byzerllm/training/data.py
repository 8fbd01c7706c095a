"""Training data: the formats Byzer-LLM and its neighbours use, read into one form and checked
row by row before a job starts.

Fine-tuning rows become OpenAI chat messages (``[{"role", "content"}, ...]``); pre-training rows
become plain text. Accepted row formats (JSON lines, Parquet or CSV):

- OpenAI: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``
- Byzer-LLM (the real ``sft`` reads only this): ``{"conversation": [{"human": str, "assistant": str}, ...]}``
  with an optional ``"system"``
- alpaca: ``{"instruction": str, "input": str, "output": str, "history": [[human, assistant], ...]}``
  (``input``, ``history`` and ``system`` optional; ``instruction`` and ``input`` joined by a newline,
  as Byzer-LLM converts them)
- pre-training: ``{"text": str}``, or ``.txt`` files with one document per line.

A bad row raises ``DataFormatError`` naming the file, the line (1-based; the row number for
Parquet/CSV) and the field.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidRequestError

Kind = Literal["sft", "pretrain"]
SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".txt")


class DataFormatError(InvalidRequestError):
    """A training row that is not in an accepted format: ``file``, ``line`` and ``field`` name it."""


def data_files(path: str | Path) -> list[Path]:
    """The data files of ``path``: the file itself, else ``data.jsonl`` in the folder (the name the
    real ``sft`` reads), else every ``.jsonl/.json/.parquet/.csv/.txt`` file in it, sorted.
    Raises ``InvalidRequestError`` (param ``local_data_dir_path``) when there is none."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise InvalidRequestError(f"training data not found: {p}", param="local_data_dir_path")
    if (p / "data.jsonl").is_file():
        return [p / "data.jsonl"]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in SUFFIXES)
    if not files:
        raise InvalidRequestError(
            f"no training data in {p}: expected data.jsonl or files ending in {', '.join(SUFFIXES)}",
            param="local_data_dir_path",
        )
    return files


def _raw_rows(file: Path) -> Iterator[tuple[int, Any]]:
    """(line or row number, row) pairs of one file."""
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        for n, row in enumerate(pq.read_table(file).to_pylist(), 1):
            yield n, row
    elif file.suffix == ".csv":
        with file.open(newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.DictReader(f), 2):  # line 1 is the header
                yield n, {k: _csv_value(v) for k, v in row.items()}
    elif file.suffix == ".txt":
        with file.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield n, {"text": line.rstrip("\n")}
    else:
        with file.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(
                        f"{file.name} line {n}: not JSON ({exc.msg})", param="data", file=str(file), line=n, field=None
                    ) from None


def _csv_value(value: str | None) -> Any:
    """CSV cells holding JSON lists (``history``, ``messages``, ``conversation``) are decoded."""
    if value and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _fail(file: Path, line: int, field: str, why: str) -> DataFormatError:
    return DataFormatError(
        f"{file.name} line {line}: field {field!r} {why}", param="data", file=str(file), line=line, field=field
    )


def _text(row: dict, key: str, file: Path, line: int, required: bool = True) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _fail(file, line, key, "is missing" if value is None else f"must be a string, not {type(value).__name__}")
    return value


def row_messages(row: Any, file: Path, line: int) -> list[dict[str, str]]:
    """One fine-tuning row as chat messages (at least one assistant turn). Raises ``DataFormatError``."""
    if not isinstance(row, dict):
        raise _fail(file, line, "<row>", "must be a JSON object")
    system = _text(row, "system", file, line, required=False)
    head = [{"role": "system", "content": system}] if system else []
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise _fail(file, line, "messages", "must be a non-empty list of {role, content}")
        out = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
                raise _fail(file, line, f"messages[{i}].role", "must be one of system, user, assistant")
            if not isinstance(m.get("content"), str):
                raise _fail(file, line, f"messages[{i}].content", "must be a string")
            out.append({"role": m["role"], "content": m["content"]})
        if not any(m["role"] == "assistant" for m in out):
            raise _fail(file, line, "messages", "has no assistant turn to learn from")
        return head + out
    if "conversation" in row:
        turns = row["conversation"]
        if not isinstance(turns, list) or not turns:
            raise _fail(file, line, "conversation", "must be a non-empty list of {human, assistant}")
        out = []
        for i, t in enumerate(turns):
            for key in ("human", "assistant"):
                if not isinstance(t, dict) or not isinstance(t.get(key), str):
                    raise _fail(file, line, f"conversation[{i}].{key}", "must be a string")
            out += [{"role": "user", "content": t["human"]}, {"role": "assistant", "content": t["assistant"]}]
        return head + out
    if "instruction" in row or "output" in row:
        instruction = _text(row, "instruction", file, line)
        extra = _text(row, "input", file, line, required=False)
        output = _text(row, "output", file, line)
        history = row.get("history") or []
        if not isinstance(history, list):
            raise _fail(file, line, "history", "must be a list of [human, assistant] pairs")
        out = []
        for i, pair in enumerate(history):
            if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise _fail(file, line, f"history[{i}]", "must be a [human, assistant] pair of strings")
            out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
        prompt = f"{instruction}\n{extra}" if extra else instruction
        return head + out + [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    raise _fail(
        file, line, "<row>", "is not a training row: expected messages, conversation, instruction/output (alpaca)"
    )


def load_rows(path: str | Path, kind: Kind) -> list[Any]:
    """Every row of the data at ``path``: chat messages for ``kind="sft"``, texts for
    ``kind="pretrain"``. Checks all rows first; raises ``DataFormatError`` at the first bad one and
    ``InvalidRequestError`` when there are no rows."""
    rows: list[Any] = []
    for file in data_files(path):
        for line, row in _raw_rows(file):
            if kind == "pretrain":
                if not isinstance(row, dict):
                    raise _fail(file, line, "<row>", "must be a JSON object with a text field")
                rows.append(_text(row, "text", file, line))
            else:
                rows.append(row_messages(row, file, line))
    if not rows:
        raise InvalidRequestError(f"no training rows in {path}", param="local_data_dir_path")
    return rows


def encode_chat(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> dict[str, list[int]]:
    """Token ids of ``messages`` rendered with the tokenizer's chat template (the one the model is
    served with), and ``assistant_masks``: 1 on the tokens of the assistant turns (their end-of-turn
    marker included), 0 elsewhere, so the loss is on the answers only. Each assistant turn is found
    by rendering the conversation up to it, which works for any template that renders a prefix of
    a conversation as a prefix of its text. Cut to ``max_length`` tokens."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            start = len(tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True))
            end = len(tokenizer.apply_chat_template(messages[: i + 1], tokenize=False))
            spans.append((start, end))
    enc = tokenizer(full, return_offsets_mapping=True, add_special_tokens=False)
    mask = [int(any(a <= s < b for a, b in spans)) for s, _ in enc["offset_mapping"]]
    return {"input_ids": enc["input_ids"][:max_length], "assistant_masks": mask[:max_length]}
