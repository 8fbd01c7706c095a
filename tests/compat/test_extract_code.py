"""``code_utils.extract_code`` gives what Byzer-LLM's gives (utils/client/code_utils.py, extract_code)."""

import pytest

from byzerllm.utils.client import code_utils
from byzerllm.utils.client.code_utils import extract_code


def test_plain_blocks_give_language_and_code_in_order():
    # real: code_utils.py::extract_code, re.findall of CODE_BLOCK_PATTERN
    text = "intro\n```shell\nls -l\n```\nthen\n```python\nprint(1)\nprint(2)\n```\n"
    assert extract_code(text) == [("shell", "ls -l"), ("python", "print(1)\nprint(2)")]


def test_a_json_block_is_tagged_json():
    # real: code_utils.py::extract_code, the (\w+)? group captures the info word
    assert extract_code('```json\n{"a": 1}\n```') == [("json", '{"a": 1}')]


def test_a_fence_without_a_language_gives_an_empty_language():
    # real: code_utils.py::extract_code, an unmatched (\w+)? group is "" in findall
    assert extract_code("```\nplain\n```") == [("", "plain")]


def test_text_without_a_block_is_returned_whole_as_unknown():
    # real: code_utils.py::extract_code, `return match if match else [(UNKNOWN, text)]`
    assert extract_code("no fences") == [("unknown", "no fences")]


def test_an_unterminated_block_is_no_block():
    # real: code_utils.py::extract_code, the pattern needs a closing fence
    text = "```python\nx = 1\n"
    assert extract_code(text) == [("unknown", text)]


def test_a_fence_that_starts_mid_line_opens_a_block():
    # real: code_utils.py::CODE_BLOCK_PATTERN is not anchored to a line start
    assert extract_code("run this: ```bash\nls\n```") == [("bash", "ls")]


def test_an_indented_fence_keeps_the_code_indentation():
    # real: code_utils.py::CODE_BLOCK_PATTERN allows [ \t]* before the closing fence only
    assert extract_code("  ```python\n  x = 1\n  ```") == [("python", "  x = 1")]


def test_crlf_line_ends_leave_no_trailing_carriage_return():
    # real: code_utils.py::CODE_BLOCK_PATTERN, \r?\n on both sides of the code; inner \r stay
    assert extract_code("```python\r\nx = 1\r\ny = 2\r\n```\r\n") == [("python", "x = 1\r\ny = 2")]


def test_a_block_with_no_line_between_its_fences_is_no_block():
    # real: code_utils.py::CODE_BLOCK_PATTERN needs a line end after the code, so this is unknown
    assert extract_code("```python\n```") == [("unknown", "```python\n```")]


def test_a_block_with_one_empty_line_has_empty_code():
    # real: code_utils.py::CODE_BLOCK_PATTERN, (.*?) may be empty between two line ends
    assert extract_code("```python\n\n```") == [("python", "")]


def test_an_inner_fence_closes_the_outer_block():
    # real: code_utils.py::CODE_BLOCK_PATTERN is lazy and does not count backticks
    assert extract_code("````markdown\n```python\nx\n```\n````") == [("markdown", "```python\nx")]


@pytest.mark.parametrize("text", ["~~~python\nx\n~~~", "```c++\nint x;\n```"])
def test_tildes_and_non_word_languages_are_no_fences(text):
    # real: code_utils.py::CODE_BLOCK_PATTERN only knows backticks and a \w+ language
    assert extract_code(text) == [("unknown", text)]


def test_a_list_of_content_parts_is_read_as_its_text():
    # real: code_utils.py::extract_code calls content_str, which shows image_url parts as <image>
    parts = [{"type": "text", "text": "```py\nx\n```"}, {"type": "image_url", "image_url": {"url": "u"}}]
    assert extract_code(parts) == [("py", "x")]
    assert code_utils.content_str(parts) == "```py\nx\n```<image>"


def test_an_unknown_content_part_is_a_value_error():
    # real: code_utils.py::content_str raises ValueError for an unknown part type
    with pytest.raises(ValueError):
        extract_code([{"type": "video", "video": "v"}])


def test_a_custom_pattern_is_used_with_findall():
    # real: code_utils.py::extract_code, re.findall(pattern, text, flags=re.DOTALL)
    assert extract_code("<<py|x = 1>>", pattern=r"<<(\w+)\|(.*?)>>") == [("py", "x = 1")]


def test_single_line_mode_adds_inline_code_and_strips():
    # real: code_utils.py::extract_code, detect_single_line_code=True branch
    text = "use `ls -l` then\n```bash\n echo hi \n```"
    assert extract_code(text, detect_single_line_code=True) == [("", "ls -l"), ("bash", "echo hi")]


def test_single_line_mode_gives_an_empty_list_without_code():
    # real: code_utils.py::extract_code, the single-line branch has no "unknown" fallback
    assert extract_code("nothing here", detect_single_line_code=True) == []


def test_the_default_pattern_is_public():
    # real: code_utils.py::CODE_BLOCK_PATTERN, usable as extract_code's pattern argument
    assert extract_code("```sh\nls\n```", pattern=code_utils.CODE_BLOCK_PATTERN) == [("sh", "ls")]
