"""Function impl: the model writes the body of a declared function.

The model sees the function's signature, docstring, the JSON schema of its return type and an
optional instruction, and writes the code. The code runs only in the sandbox
(``byzerllm.structured.sandbox``); its return value is validated against the return type. Code
that ran and validated is cached on disk, keyed by model, function source and instruction, so a
later call (in this process or after a restart) skips the model.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import textwrap
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic

from .code import extract_code
from .output import json_schema_for
from .plan import Call, Plan
from .sandbox import run_function


def cache_dir() -> Path:
    """``$BYZERLLM_CACHE_DIR/impl`` or ``~/.cache/byzerllm/impl``."""
    root = os.environ.get("BYZERLLM_CACHE_DIR") or Path.home() / ".cache" / "byzerllm"
    return Path(root) / "impl"


def function_source(fn: Callable) -> str:
    """The function's source without decorators (its signature and docstring when the source
    cannot be read, e.g. in a REPL)."""
    try:
        lines = textwrap.dedent(inspect.getsource(fn)).splitlines()
        start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(("def ", "async def ")))
        return "\n".join(lines[start:])
    except (OSError, TypeError, StopIteration):
        return f"def {fn.__name__}{inspect.signature(fn)}:\n    '''{inspect.getdoc(fn) or ''}'''"


def return_type(fn: Callable) -> Any:
    try:
        return typing.get_type_hints(fn).get("return", Any)
    except Exception:
        return fn.__annotations__.get("return", Any)


def cache_key(model: str, fn: Callable, instruction: str | None) -> str:
    return hashlib.sha256(json.dumps([model, function_source(fn), instruction or ""]).encode()).hexdigest()[:32]


def cache_path(model: str, fn: Callable, instruction: str | None) -> Path:
    return cache_dir() / f"{fn.__name__}-{cache_key(model, fn, instruction)}.py"


def read_cache(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def write_cache(path: Path, code: str) -> None:
    """Atomic: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(code)
    os.replace(tmp, path)


def clear_cache(fn: Callable | None = None) -> int:
    """Remove cached code of ``fn`` (all functions when None); returns the number of files."""
    folder = cache_dir()
    if not folder.exists():
        return 0
    pattern = f"{fn.__name__}-*.py" if fn is not None else "*.py"
    removed = 0
    for path in folder.glob(pattern):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _classes(tp: Any) -> list[str]:
    return [tp.__name__] if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel) else []


def impl_prompt(fn: Callable, instruction: str | None) -> str:
    tp = return_type(fn)
    lines = [
        "Write the body of this Python function so that it does what its docstring says.",
        "",
        "```python",
        function_source(fn),
        "```",
        "",
    ]
    if tp is not Any and tp is not None:
        schema = json.dumps(json_schema_for(tp), ensure_ascii=False)
        name = getattr(tp, "__name__", "the value")
        build = f" Build it as {name}(field=value, ...)." if _classes(tp) else ""
        lines.append(f"It returns {name}, a value of this JSON schema: {schema}.{build}")
    if instruction:
        lines.append(instruction)
    lines += [
        "Use only the Python standard library; datetime is imported. For example:",
        "",
        "```python",
        _EXAMPLE,
        "```",
        "",
        "Reply with the whole function in one ```python block.",
    ]
    return "\n".join(lines)


# one worked example: small models copy its shape (datetime use, keyword construction of the result)
_EXAMPLE = '''def days_ago(n: int) -> Day:
    """The date n days before today."""
    day = datetime.date.today() - datetime.timedelta(days=n)
    return Day(day=day.strftime("%Y-%m-%d"))'''


def signature_line(fn: Callable) -> str:
    """``def name(params) -> Return:``, the line the model's answer starts with (prefilled)."""
    sig = inspect.signature(fn)
    params = ", ".join(
        p.name + (f": {_type_name(p.annotation)}" if p.annotation is not p.empty else "")
        for p in sig.parameters.values()
    )
    ret = "" if sig.return_annotation is sig.empty else f" -> {_type_name(sig.return_annotation)}"
    return f"def {fn.__name__}({params}){ret}:\n"


def _type_name(tp: Any) -> str:
    return tp if isinstance(tp, str) else getattr(tp, "__name__", None) or repr(tp).replace("typing.", "")


def validate_result(fn: Callable, value: Any) -> tuple[Any, str]:
    tp = return_type(fn)
    if tp is Any:
        return value, ""
    try:
        return pydantic.TypeAdapter(tp).validate_python(value), ""
    except pydantic.ValidationError as exc:
        return (
            None,
            f"the generated function returned {json.dumps(value, ensure_ascii=False)[:200]}, "
            f"which is not a valid {getattr(tp, '__name__', tp)}: {exc}",
        )


def execute(fn: Callable, code: str, kwargs: dict[str, Any], timeout: float = 10.0) -> tuple[Any, str]:
    """Run cached or generated ``code`` for ``fn`` in the sandbox and validate its result."""
    value, reason = run_function(code, fn.__name__, kwargs, _classes(return_type(fn)), timeout=timeout)
    if reason:
        return None, reason
    return validate_result(fn, value)


def impl_plan(
    fn: Callable,
    kwargs: dict[str, Any],
    instruction: str | None,
    llm_config: dict[str, Any],
    format_func: Callable[[str, str | None], str] | None = None,
    execute_code: bool = True,
) -> Plan:
    """Ask for the code, run it on ``kwargs``; one re-ask carrying the error.
    Returns ``(value, code, reason)``."""
    prompt = format_func(function_source(fn), instruction) if format_func else impl_prompt(fn, instruction)
    start = "```python\n" + signature_line(fn) + "    "
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": start}]
    extra = {"continue_final_message": True}
    code, reason = "", ""
    for attempt in (0, 1):
        resp = yield Call(messages, {**llm_config, "stop": ["```"]}, extra)
        code = signature_line(fn) + "    " + _code_of(resp.output).lstrip(" ")
        if not execute_code:
            try:
                compile(code, "<generated>", "exec")
                return None, code, ""
            except SyntaxError as exc:
                reason = f"the generated code does not compile: {exc}"
        else:
            value, reason = execute(fn, code, kwargs)
            if not reason:
                return value, code, ""
        if attempt == 0:
            messages = [
                messages[0],
                {"role": "assistant", "content": f"```python\n{code}\n```"},
                {"role": "user", "content": f"{reason}\nFix the function."},
                {"role": "assistant", "content": start},
            ]
    return None, code, reason


def _code_of(text: str) -> str:
    blocks = extract_code(text)
    lang, code = blocks[0]
    return code if lang != "unknown" else text.strip().removesuffix("```").strip()
