"""Type checkers see a prompt function's signature: mypy on a small module that uses
``@byzerllm.prompt`` the ways the docs do, with the revealed types and the errors it must report.

Each checked line of ``USE`` ends with ``# reveal: <type>`` (mypy's ``reveal_type`` output, with
``use.`` for names of the module itself), ``# error: <code>``, or nothing (no message allowed).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mypy", reason="mypy is a dev extra")

USE = '''
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pydantic

import byzerllm
from byzerllm.prompt import AsyncPromptFunction, PromptFunction


class Foo(pydantic.BaseModel):
    x: int


@byzerllm.prompt(llm="m")
def f(x: int, y: str = "a") -> Foo:
    """{{ x }} {{ y }}"""


@byzerllm.prompt
def bare(x: int) -> Foo:
    """{{ x }}"""


@byzerllm.prompt()
async def af(x: int) -> Foo:
    """{{ x }}"""


@byzerllm.prompt()
async def astream(q: str) -> AsyncIterator[str]:
    """{{ q }}"""


@byzerllm.prompt()
def stream(q: str) -> Iterator[str]:
    """{{ q }}"""


@byzerllm.prompt()
def untyped(x):
    """{{ x }}"""


class RAG:
    llm: Any = None

    @staticmethod
    @byzerllm.prompt()
    def static_prompt(x: int, times: int = 1) -> str:
        """{{ x }} x {{ times }}"""

    @classmethod
    @byzerllm.prompt()
    def cls_prompt(cls, name: str, times: int = 1) -> str:
        """{{ name }} x {{ times }}"""

    @byzerllm.prompt(llm=lambda self: self.llm)
    def answer(self, name: str) -> str:
        """{{ name }}"""


reveal_type(f)  # reveal: byzerllm.prompt.function.PromptFunction[[x: int, y: str =], use.Foo]
reveal_type(f(1))  # reveal: use.Foo
reveal_type(f.run(1, y="b"))  # reveal: use.Foo
reveal_type(f.prompt(1))  # reveal: str
chained = f.with_llm("m").options({}).with_meta({}).with_max_turns(2).with_conversation([])
reveal_type(chained)  # reveal: byzerllm.prompt.function.PromptFunction[[x: int, y: str =], use.Foo]
reveal_type(f.with_return_type(int)(1))  # reveal: int
reveal_type(f.with_return_type(list[int])(1))  # reveal: list[int]
reveal_type(bare(2))  # reveal: use.Foo
reveal_type(af)  # reveal: byzerllm.prompt.function.AsyncPromptFunction[[x: int], use.Foo]
reveal_type(stream("q"))  # reveal: typing.Iterator[str]
reveal_type(astream("q"))  # reveal: byzerllm.prompt.function.AsyncStream[str]
reveal_type(untyped(1))  # reveal: Any
reveal_type(RAG().answer("n"))  # reveal: str
reveal_type(RAG.cls_prompt("n", times=2))  # reveal: str
reveal_type(RAG.static_prompt(1))  # reveal: str
llm = byzerllm.SimpleByzerLLM()


@llm.prompt()
def bound(x: int) -> Foo:
    """{{ x }}"""


reveal_type(bound(1))  # reveal: use.Foo
RAG().cls_prompt(1)  # error: arg-type
f("1")  # error: arg-type
f(1, z=2)  # error: call-arg
f.prompt()  # error: call-arg
bare(1).y  # error: attr-defined
RAG().answer(3)  # error: arg-type
typed: PromptFunction[[int], Foo] = bare
atyped: AsyncPromptFunction[[int], Foo] = af
wrong: PromptFunction[[str], Foo] = bare  # error: assignment


async def main() -> None:
    reveal_type(await af(1))  # reveal: use.Foo
    reveal_type(await af.prompt(1))  # reveal: str
    async for piece in astream("q"):
        reveal_type(piece)  # reveal: str
    reveal_type(await astream("q"))  # reveal: typing.AsyncIterator[str]
    await af("1")  # error: arg-type
'''

MESSAGE = re.compile(r"^use\.py:(\d+): (error|note): (.*?)(?:  \[([\w-]+)\])?$")


def expected(source: str) -> dict[int, str]:
    marks = {}
    for number, line in enumerate(source.splitlines(), 1):
        m = re.search(r"# (reveal|error): (.+)$", line)
        if m:
            marks[number] = f"{m[1]}: {m[2]}"
    return marks


def test_mypy_sees_the_decorated_signatures_and_results(tmp_path):
    source = textwrap.dedent(USE)
    (tmp_path / "use.py").write_text(source)
    (tmp_path / "mypy.ini").write_text(
        "[mypy]\ncache_dir = .cache\ndisable_error_code = empty-body\npretty = False\nshow_error_codes = True\n"
        "hide_error_context = True\nerror_summary = False\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "use.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seen: dict[int, str] = {}
    for out in proc.stdout.splitlines():
        m = MESSAGE.match(out)
        assert m, f"unexpected mypy output: {out}\n{proc.stdout}{proc.stderr}"
        number, kind, text, code = int(m[1]), m[2], m[3], m[4]
        if kind == "note" and text.startswith("Revealed type is "):
            seen[number] = "reveal: " + text.removeprefix("Revealed type is ").strip('"')
        elif kind == "error":  # other notes explain an error
            seen.setdefault(number, f"error: {code}")
    assert seen == expected(source), proc.stdout
