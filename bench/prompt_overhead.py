"""Time the prompt layer adds per call (render + parse), the model excluded.

A prompt function is called 1,000 times against an in-process client that answers at once with
a fixed response, so all measured time is the prompt layer's: binding arguments, running the
body, rendering the Jinja2 docstring, building messages, and parsing the answer (a ``str``, and
a pydantic ``Story`` from JSON). Reference, side by side: the least code that does the same
work by hand (a pre-compiled jinja2 template's render + ``Story.model_validate_json``).
Target (issue): median <= 1 ms per call.

    .venv/bin/python bench/prompt_overhead.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jinja2
import pydantic
from _common import print_table, write_result

import byzerllm
from byzerllm.types import LLMResponse

STORY_JSON = '{"title": "The Fox", "body": "Once upon a time a fox found a shining stone in the forest."}'
TASKS = [{"name": f"task {i}", "due_date": f"2024-03-{i + 10}"} for i in range(5)]


class Story(pydantic.BaseModel):
    title: str = pydantic.Field(description="title")
    body: str = pydantic.Field(description="body")


class InstantLLM:
    """Answers at once: the model is excluded from the measurement."""

    default_model_name = "instant"

    def __init__(self, text: str):
        self.response = LLMResponse(
            text,
            {},
            {
                "input_tokens_count": 1,
                "generated_tokens_count": 1,
                "time_cost": 0.0,
                "first_token_time": 0.0,
                "finish_reason": "stop",
            },
        )

    def chat_oai(self, conversations, model=None, llm_config=None, extra_request_params=None):
        return [self.response]

    def get_meta(self, model=None):
        return {"support_response_format": ["json_object", "json_schema"]}


def timed(fn, calls: int) -> list[float]:
    for _ in range(50):
        fn()
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    text_llm, story_llm = InstantLLM("Hello Jane, here are your tasks."), InstantLLM(STORY_JSON)

    @byzerllm.prompt(llm=text_llm)
    def reminder(name: str, tasks: list) -> str:
        """
        Hello {{ name }}, you have {{ tasks | length }} tasks:
        {% for task in tasks %}
        - Task: {{ task.name }} | Due: {{ task.due_date }}
        {% endfor %}
        """

    @byzerllm.prompt(llm=story_llm)
    def tell_story(topic: str) -> Story:
        """
        Tell a 100-word story about {{ topic }}.
        """

    tpl_text = jinja2.Template(
        "Hello {{ name }}, you have {{ tasks | length }} tasks:\n{% for task in tasks %}\n"
        "- Task: {{ task.name }} | Due: {{ task.due_date }}\n{% endfor %}"
    )
    tpl_story = jinja2.Template("Tell a 100-word story about {{ topic }}.")

    def by_hand_text():
        return [{"role": "user", "content": tpl_text.render(name="Jane", tasks=TASKS)}]

    def by_hand_story():
        [{"role": "user", "content": tpl_story.render(topic="a fox")}]
        return Story.model_validate_json(STORY_JSON)

    rows, result = [], {"calls": args.calls}
    for label, ours, ref in (
        ("str result (render)", lambda: reminder("Jane", TASKS), by_hand_text),
        ("Story result (render + parse)", lambda: tell_story("a fox"), by_hand_story),
    ):
        o, r = timed(ours, args.calls), timed(ref, args.calls)
        om, rm = statistics.median(o) * 1e3, statistics.median(r) * 1e3
        op99 = sorted(o)[int(len(o) * 0.99) - 1] * 1e3
        rows.append([label, om, op99, rm, om - rm, "<= 1 ms"])
        result[label] = {"ours_median_ms": om, "ours_p99_ms": op99, "by_hand_median_ms": rm, "met": om <= 1.0}
    print_table(
        f"Prompt layer time per call, model excluded ({args.calls} calls)",
        ["case", "prompt function median (ms)", "p99 (ms)", "by hand median (ms)", "added (ms)", "target"],
        rows,
    )
    result["target"] = "median <= 1 ms"
    print("wrote", write_result("prompt_overhead", result))


if __name__ == "__main__":
    main()
