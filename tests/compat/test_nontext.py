"""``byzerllm.utils.nontext`` behaves like Byzer-LLM's (utils/nontext.py)."""

import base64
import json

import pytest

from byzerllm.errors import InvalidRequestError
from byzerllm.multimodal import attachment_part, legacy_parts
from byzerllm.utils.nontext import Audio, Image, TagExtractor, tagged_parts

PNG = b"\x89PNG\r\n\x1a\nfake"
WAV = b"RIFF0000WAVEfake"


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    return path


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "talk.wav"
    path.write_bytes(WAV)
    return path


def data_url(kind: str, raw: bytes) -> str:
    return f"data:{kind};base64,{base64.b64encode(raw).decode()}"


def test_a_loaded_image_is_the_tagged_data_url(png):
    # real: nontext.py::Image.load_image_from_path returns "<_image_>data:image/...;base64,...</_image_>"
    assert Image.load_image_from_path(str(png)) == f"<_image_>{data_url('image/png', PNG)}</_image_>"


def test_only_content_gives_the_bare_data_url(png):
    # real: nontext.py::Image.load_image_from_path, `if only_content: return f"data:image/..."`
    assert Image.load_image_from_path(str(png), only_content=True) == data_url("image/png", PNG)


def test_a_missing_image_file_is_named(tmp_path):
    # ours: an InvalidRequestError naming the file (real: open() raises FileNotFoundError)
    with pytest.raises(InvalidRequestError, match="file does not exist"):
        Image.load_image_from_path(str(tmp_path / "none.png"))


def test_a_loaded_image_in_a_prompt_template_is_an_image_part(png):
    # real: nontext.py::Image.to_content turns the tag into an image item with the bare data URL
    assert attachment_part(Image.load_image_from_path(str(png))) == {
        "type": "image_url",
        "image_url": {"url": data_url("image/png", PNG)},
    }


def test_has_image_needs_a_closed_top_level_image_tag():
    # real: nontext.py::Image.has_image checks start_tag "<_image_>" and end_tag "</_image_>"
    assert Image("look <_image_>data:image/png;base64,AA</_image_>").has_image()
    assert not Image("look <_image_>data:image/png;base64,AA").has_image()
    assert not Image("no image").has_image()


def test_to_content_lists_images_then_the_remaining_text(png):
    # real: nontext.py::Image.to_content, an item per image (paths loaded), then {"text": rest.strip()}
    text = f"<_image_>{png}</_image_> what is this? <_image_>data:image/png;base64,AA</_image_>"
    assert Image(text).to_content() == [
        {"image": data_url("image/png", PNG)},
        {"image": "data:image/png;base64,AA"},
        {"text": "what is this?"},
    ]


def test_to_content_keeps_an_empty_text_item():
    # real: nontext.py::Image.to_content always appends the text item
    assert Image("<_image_>data:image/png;base64,AA</_image_>").to_content()[-1] == {"text": ""}


def test_img_tags_are_converted_to_image_tags():
    # real: nontext.py::Image.convert_image_paths_from, re.sub of <img>...</img> with the content stripped
    text = "see <img> /a/b.png \n</img> and <img>c.jpg</img>"
    assert Image.convert_image_paths_from(text) == "see <_image_>/a/b.png</_image_> and <_image_>c.jpg</_image_>"
    assert Image.convert_image_paths_from("[x]", "[", "]") == "<_image_>x</_image_>"


def test_image_paths_are_extracted_without_data_urls(png):
    # real: nontext.py::Image.extract_image_paths, <_image_> or <_img_> tags, data:image/ skipped, stripped
    text = f"<_image_> {png} </_image_> <_img_>b.png</_img_> <_image_>data:image/png;base64,AA</_image_>"
    assert Image.extract_image_paths(text) == [str(png), "b.png"]
    assert Image.extract_image_paths(f"<_image_>{png}</_image_>", to_base64=True) == [
        Image.load_image_from_path(str(png))
    ]


def test_an_image_data_url_is_saved_to_a_file(tmp_path):
    # real: nontext.py::Image.save_image_to_path decodes the base64 and returns the path written
    out = tmp_path / "out.png"
    assert Image.save_image_to_path(data_url("image/png", PNG), str(out)) == str(out)
    assert out.read_bytes() == PNG


def test_save_can_fix_the_suffix_to_the_image_type(tmp_path):
    # real: nontext.py::Image.save_image_to_path, auto_fix_suffix replaces a suffix that is not .<type>
    written = Image.save_image_to_path(data_url("image/png", PNG), str(tmp_path / "out.jpg"), auto_fix_suffix=True)
    assert written == str(tmp_path / "out.png")


def test_saving_something_else_than_an_image_data_url_is_a_value_error(tmp_path):
    # real: nontext.py::Image.save_image_to_path, `raise ValueError("Invalid image data format")`
    with pytest.raises(ValueError):
        Image.save_image_to_path("hello", str(tmp_path / "x.png"))


def test_tag_extractor_reads_the_top_level_tags_in_order():
    # real: nontext.py::TagExtractor.extract, the example of the Byzer-LLM guide
    text = """
    hello
    <_image_>data:image/jpeg;base64,xxxxxx</_image_>
                     hello
    <_image_>data:image/jpeg;base64,xxxxxx2</_image_>
    """
    root = TagExtractor(text).extract()
    assert [t.content for t in root.content] == ["data:image/jpeg;base64,xxxxxx", "data:image/jpeg;base64,xxxxxx2"]
    assert root.content[0].start_tag == "<_image_>" and root.content[0].end_tag == "</_image_>"


def test_a_tag_inside_a_tag_makes_the_content_a_list():
    # real: nontext.py::TagExtractor.extract_start_tag, an open tag's str content becomes a list
    root = TagExtractor("<_a_>x <_b_>y</_b_></_a_>").extract()
    outer = root.content[0]
    assert outer.content[0] == "x " and outer.content[1].content == "y" and outer.content[1].parent is outer


def test_a_loaded_audio_file_is_the_tagged_data_url(wav):
    # real: nontext.py::Audio.load_audio_from_path returns "<_audio_>data:audio/<ext>;base64,...</_audio_>"
    assert Audio.load_audio_from_path(str(wav)) == f"<_audio_>{data_url('audio/wav', WAV)}</_audio_>"
    assert Audio.load_audio_from_path(str(wav), only_content=True) == data_url("audio/wav", WAV)


def test_audio_to_content_leaves_out_empty_text(wav):
    # real: nontext.py::Audio.to_content, `if new_text.strip(): result.append({"text": ...})`
    assert Audio(f"<_audio_>{wav}</_audio_>").to_content() == [{"audio": data_url("audio/wav", WAV)}]
    assert Audio(f"<_audio_>{wav}</_audio_> transcribe").has_audio()


def test_audio_paths_are_extracted_and_audio_saved(wav, tmp_path):
    # real: nontext.py::Audio.extract_audio_paths and Audio.save_audio_to_path
    assert Audio.extract_audio_paths(f"<_audio_>{wav}</_audio_><_audio_>data:audio/mp3;base64,AA</_audio_>") == [
        str(wav)
    ]
    out = Audio.save_audio_to_path(data_url("audio/wav", WAV), str(tmp_path / "copy.mp3"), auto_fix_suffix=True)
    assert out == str(tmp_path / "copy.wav") and (tmp_path / "copy.wav").read_bytes() == WAV


def test_tagged_text_becomes_image_parts_then_the_text(png):
    # real: simple_byzerllm_client.py::process_image sends Image(content).to_content() as image_url and text parts
    text = f"what is in <_image_>{png}</_image_> this picture?"
    assert tagged_parts(text) == [
        {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}},
        {"type": "text", "text": "what is in  this picture?"},
    ]


def test_tagged_audio_becomes_an_input_audio_part(wav):
    # real: byzerllm_client.py::_query turns <_audio_> tags into audio items (Audio.to_content)
    assert tagged_parts(f"<_audio_>{wav}</_audio_>") == [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(WAV).decode(), "format": "wav"}}
    ]


def test_text_without_tags_has_no_tagged_parts():
    # real: simple_byzerllm_client.py::process_image leaves a message without has_image() unchanged
    assert tagged_parts("just text with <b>html</b>") is None


def test_a_tag_naming_a_missing_file_is_named(tmp_path):
    # ours: an InvalidRequestError (real logs the error and sends the text unchanged)
    with pytest.raises(InvalidRequestError, match="file does not exist"):
        tagged_parts(f"<_image_>{tmp_path / 'none.png'}</_image_>")


def test_the_json_message_form_accepts_tagged_images(png):
    # real: the guide's chat_oai example puts load_image_from_path's tagged value in "image" and "image_url"
    image = Image.load_image_from_path(str(png))
    url = data_url("image/png", PNG)
    assert legacy_parts(json.dumps([{"image": image, "text": "what?"}])) == [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": "what?"},
    ]
    assert legacy_parts(json.dumps([{"type": "image_url", "image_url": {"url": image, "detail": "high"}}])) == [
        {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
    ]
