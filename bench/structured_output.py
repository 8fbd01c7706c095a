"""Structured output on SmolLM2-135M: prompt-only vs grammar-constrained, side by side.

32 fixed cases: 16 tool calls (6 tools, with enums and nested, list-valued arguments) and 16
typed responses (8 pydantic models with lists, optionals and nesting), each in English and
Chinese. Every case runs under both strategies of ``chat_oai`` (``setup_structured_strategy``):
- prompt: the schema in the prompt, JSON parsed from the text, one re-ask on an error;
- constrained: the schema as ``response_format``, turned into a llama.cpp grammar.
Reported per strategy: schema-valid share on the first answer and after the re-ask, the share
of tool cases where the expected tool was chosen, and median latency. Target (issue): 100%
schema-valid with constrained decoding; tool-choice accuracy is reported as measured.

    .venv/bin/python bench/structured_output.py [--max-tokens 256]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Annotated, Literal

import pydantic
from _common import print_table, ray_cluster, write_result

import byzerllm


class Passenger(pydantic.BaseModel):
    name: str
    age: int


def get_weather(
    city: Annotated[str, "city name"], unit: Annotated[str, "temperature unit", {"enum": ["celsius", "fahrenheit"]}]
) -> str:
    """Get the current weather of a city."""
    return f"sunny in {city}"


def compute_date_range(
    count: Annotated[int, "时间跨度"], unit: Annotated[str, "时间单位", {"enum": ["day", "week", "month", "year"]}]
) -> list[str]:
    """计算日期范围 (compute a date range ending today)"""
    return [str(count), unit]


def compute_now() -> str:
    """计算当前时间 (the current time)"""
    return "now"


def book_flight(origin: str, destination: str, date: Annotated[str, "yyyy-mm-dd"], passengers: list[Passenger]) -> str:
    """Book a flight for a list of passengers."""
    return "booked"


def send_email(to: list[str], subject: str, body: str, priority: Literal["low", "normal", "high"] = "normal") -> str:
    """Send an email."""
    return "sent"


def convert_currency(
    amount: float,
    from_currency: Annotated[str, "ISO code", {"enum": ["USD", "EUR", "CNY", "JPY"]}],
    to_currency: Annotated[str, "ISO code", {"enum": ["USD", "EUR", "CNY", "JPY"]}],
) -> float:
    """Convert an amount of money between currencies."""
    return amount


TOOLS = [get_weather, compute_date_range, compute_now, book_flight, send_email, convert_currency]
TOOL_CASES = [
    ("What is the weather in Paris in celsius?", "get_weather"),
    ("北京今天天气怎么样？用摄氏度。", "get_weather"),
    ("Show me the trend of the last three months.", "compute_date_range"),
    ("最近三个月趋势", "compute_date_range"),
    ("What time is it now?", "compute_now"),
    ("计算当前时间", "compute_now"),
    ("Book a flight from London to Rome on 2025-05-01 for Ann, 30, and Bob, 32.", "book_flight"),
    ("帮我订一张2025-06-01从上海到东京的机票，乘客张三，28岁。", "book_flight"),
    ("Email bob@example.com with subject Hello and body 'See you soon', high priority.", "send_email"),
    ("给 li@example.com 发一封邮件，主题是会议，内容是明天十点开会。", "send_email"),
    ("Convert 100 USD to EUR.", "convert_currency"),
    ("把500人民币换成日元。", "convert_currency"),
    ("How many days are in the last two weeks?", "compute_date_range"),
    ("上周的数据范围是什么？", "compute_date_range"),
    ("Is it raining in Tokyo? Use fahrenheit.", "get_weather"),
    ("现在几点了？", "compute_now"),
]


class Story(pydantic.BaseModel):
    title: str
    body: str


class Person(pydantic.BaseModel):
    name: str
    age: int
    email: str | None = None


class Ingredient(pydantic.BaseModel):
    name: str
    quantity: str


class Recipe(pydantic.BaseModel):
    name: str
    ingredients: list[Ingredient]
    steps: list[str]


class Address(pydantic.BaseModel):
    city: str
    street: str


class Company(pydantic.BaseModel):
    name: str
    address: Address
    employees: int


class MovieReview(pydantic.BaseModel):
    title: str
    rating: int = pydantic.Field(ge=1, le=5)
    tags: list[str]
    recommended: bool


class Event(pydantic.BaseModel):
    name: str
    date: str
    attendees: list[str] | None = None


class Product(pydantic.BaseModel):
    name: str
    price: float
    in_stock: bool
    categories: list[str]


class Translation(pydantic.BaseModel):
    source: str
    target: str
    language: Literal["en", "zh", "fr"]


CLASS_CASES = [
    ("Tell a short story with a title.", Story),
    ("讲一个有标题的小故事。", Story),
    ("Describe a person: name, age and email.", Person),
    ("介绍一个人：名字、年龄和邮箱。", Person),
    ("Give a pancake recipe.", Recipe),
    ("给一个番茄炒蛋的菜谱。", Recipe),
    ("Describe a company with its address.", Company),
    ("描述一家公司和它的地址。", Company),
    ("Review the movie Inception.", MovieReview),
    ("评价电影《流浪地球》。", MovieReview),
    ("Describe a birthday party event.", Event),
    ("描述一次生日聚会活动。", Event),
    ("Describe a laptop for sale.", Product),
    ("描述一款在售的手机。", Product),
    ("Translate 'good morning' into French.", Translation),
    ("把“谢谢”翻译成英文。", Translation),
]


def run_case(llm, case, max_tokens: int) -> dict:
    query, target = case
    start = time.perf_counter()
    try:
        return _run_case(llm, query, target, max_tokens, start)
    except Exception as exc:  # counted as a failure of the strategy, and shown
        return {
            "query": query,
            "kind": "tool" if isinstance(target, str) else "class",
            "valid": False,
            "first_valid": False,
            "right_tool": False,
            "seconds": time.perf_counter() - start,
            "reason": f"{type(exc).__name__}: {exc}"[:200],
        }


def _run_case(llm, query, target, max_tokens: int, start: float) -> dict:
    if isinstance(target, str):
        [r] = llm.chat_oai([{"role": "user", "content": query}], tools=TOOLS, llm_config={"max_length": max_tokens})
        valid = not r.metadata["reason"]
        right = valid and r.metadata["selected_functions"] == [target]
    else:
        [r] = llm.chat_oai(
            [{"role": "user", "content": query}], response_class=target, llm_config={"max_length": max_tokens}
        )
        valid, right = r.value is not None, None
    return {
        "query": query,
        "kind": "tool" if isinstance(target, str) else "class",
        "valid": valid,
        "first_valid": valid and r.metadata["requests"] == 1,
        "right_tool": right,
        "seconds": time.perf_counter() - start,
        "reason": r.metadata["reason"][:200],
    }


def run_all(llm, cases, max_tokens: int, workers: int = 2) -> list[dict]:
    """Cases in parallel over the deployment's workers, results in case order."""
    results: list[dict | None] = [None] * len(cases)
    lock, todo = threading.Lock(), list(enumerate(cases))

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i, case = todo.pop(0)
            results[i] = run_case(llm, case, max_tokens)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def summary(rows: list[dict]) -> dict:
    tools = [r for r in rows if r["kind"] == "tool"]
    return {
        "cases": len(rows),
        "schema_valid": sum(r["valid"] for r in rows) / len(rows),
        "schema_valid_first_answer": sum(r["first_valid"] for r in rows) / len(rows),
        "right_tool": sum(bool(r["right_tool"]) for r in tools) / len(tools),
        "median_latency_s": statistics.median(r["seconds"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    name = "bench_structured"
    cases = TOOL_CASES + CLASS_CASES
    out: dict = {"cases": len(cases), "max_tokens": args.max_tokens}
    with ray_cluster():
        llm = byzerllm.ByzerLLM()
        if llm.is_model_exist(name):
            llm.undeploy(name)
        llm.setup_num_workers(2).deploy(model_path="builtin:smollm2", udf_name=name)
        llm.setup_default_model_name(name)
        try:
            for strategy in ("prompt", "constrained"):
                llm.setup_structured_strategy(name, strategy)
                rows = run_all(llm, cases, args.max_tokens)
                out[strategy] = {**summary(rows), "rows": rows}
        finally:
            llm.undeploy(name)
    print_table(
        f"Structured output on SmolLM2-135M ({len(cases)} cases: {len(TOOL_CASES)} tool calls, "
        f"{len(CLASS_CASES)} typed responses)",
        ["strategy", "schema-valid (first answer)", "schema-valid (after re-ask)", "right tool", "median latency (s)"],
        [
            [
                s,
                f"{out[s]['schema_valid_first_answer']:.0%}",
                f"{out[s]['schema_valid']:.0%}",
                f"{out[s]['right_tool']:.0%}",
                out[s]["median_latency_s"],
            ]
            for s in ("prompt", "constrained")
        ],
    )
    out["target"] = "constrained schema_valid == 100%"
    out["met"] = out["constrained"]["schema_valid"] == 1.0
    print("wrote", write_result("structured_output", out))


if __name__ == "__main__":
    main()
