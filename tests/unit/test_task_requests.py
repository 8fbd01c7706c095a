"""The chat-shaped forms of speech, transcription and image calls (Byzer-LLM's quick guide and
README) become typed requests; bad ones are errors naming the field."""

from __future__ import annotations

import base64
import json

import pytest

from byzerllm.backends.openai_compat import task_for_model
from byzerllm.client.tasks import (
    encode_images,
    image_request,
    serving_task,
    speech_request,
    transcription_request,
)
from byzerllm.errors import InvalidRequestError, UnsupportedParameterError
from byzerllm.multimodal import Audio


def user(content):
    return [{"role": "user", "content": content}]


def test_serving_task_is_the_non_chat_task_of_a_deployment():
    assert serving_task({"tasks": ["speech"]}) == "speech"
    assert serving_task({"tasks": ["transcription"]}) == "transcription"
    assert serving_task({"tasks": ["image"]}) == "image"
    assert serving_task({"tasks": ["chat", "embed", "rerank"]}) is None
    assert serving_task({"tasks": ["embed"]}) is None
    assert serving_task({}) is None


def test_tts_json_content_as_the_quick_guide_sends_it():
    content = json.dumps({"input": "hello, open_tts", "voice": "alloy", "response_format": "mp3"})
    req = speech_request(user(content))
    assert (req.input, req.voice, req.response_format, req.speed) == ("hello, open_tts", "alloy", "mp3", 1.0)
    plain = speech_request(user("just words"), {"voice": "joe"})
    assert (plain.input, plain.voice, plain.response_format) == ("just words", "joe", "mp3")


def test_tts_bad_fields_are_named():
    with pytest.raises(InvalidRequestError) as err:
        speech_request(user(json.dumps({"input": "x", "colour": "red"})))
    assert err.value.param == "conversations[0].content.colour"
    with pytest.raises(InvalidRequestError) as err:
        speech_request(user(json.dumps({"input": "  "})))
    assert err.value.param == "conversations[0].content.input"
    with pytest.raises(UnsupportedParameterError) as err:
        speech_request(user("x"), {"gen.temperature": 0.3})
    assert err.value.param == "temperature"


def test_whisper_audio_forms(tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF-not-really-audio")
    loaded = Audio.load_audio_from_path(str(wav), only_content=True)
    for content in (
        json.dumps([{"audio": loaded}, {"text": "what is said?"}]),
        f"{Audio.load_audio_from_path(str(wav))} what is said?",
        json.dumps({"audio": base64.b64encode(wav.read_bytes()).decode(), "type": "wav"}),
        [
            {
                "type": "input_audio",
                "input_audio": {"data": base64.b64encode(wav.read_bytes()).decode(), "format": "wav"},
            }
        ],
    ):
        req = transcription_request(user(content), {"language": "en"})
        assert req.audio == wav.read_bytes() and req.language == "en" and req.task == "transcribe"


def test_whisper_without_audio_names_the_message():
    with pytest.raises(InvalidRequestError) as err:
        transcription_request([{"role": "system", "content": "s"}, {"role": "user", "content": "no audio here"}])
    assert err.value.param == "conversations[1].content"
    with pytest.raises(InvalidRequestError) as err:
        transcription_request(user(json.dumps({"audio": "%%%not base64%%%"})))
    assert "base64" in str(err.value)


def test_image_quick_guide_form_answers_one_base64_png():
    content = json.dumps({"input": "a white siamese cat", "size": "1024x1024", "quality": "standard"})
    req, listed = image_request(user(content))
    assert (req.prompt, req.size, req.quality, req.n, listed) == (
        "a white siamese cat",
        "1024x1024",
        "standard",
        1,
        False,
    )
    assert base64.b64decode(encode_images([b"png"], listed)) == b"png"


def test_image_stable_diffusion_form_with_generation_keys():
    config = {
        "gen.batch_size": 3,
        "generation.width": 64,
        "generation.height": 32,
        "generation.sampling_steps": 4,
        "generation.cfg_scale": 5.0,
        "generation.seed": -1,
        "generation.negative_prompt": "blurry",
    }
    req, listed = image_request(user("画一只猫"), config)
    assert (req.prompt, req.n, req.size, req.steps, req.guidance_scale, req.seed, req.negative_prompt) == (
        "画一只猫",
        3,
        "64x32",
        4,
        5.0,
        None,
        "blurry",
    )
    assert listed
    out = json.loads(encode_images([b"a", b"b", b"c"], listed))
    assert [base64.b64decode(x["img64"]) for x in out] == [b"a", b"b", b"c"]


def test_image_keys_without_an_equivalent_are_refused_by_name():
    with pytest.raises(UnsupportedParameterError) as err:
        image_request(user("cat"), {"generation.init_image": "..."})
    assert err.value.param == "init_image"
    with pytest.raises(InvalidRequestError) as err:
        image_request(user(json.dumps({"input": "cat", "colour": "red"})))
    assert err.value.param == "conversations[0].content.colour"
    with pytest.raises(InvalidRequestError):
        image_request(user(json.dumps({"input": ""})))


@pytest.mark.parametrize(
    "model,task",
    [
        ("tts-1", "speech"),
        ("gpt-4o-mini-tts", "speech"),
        ("whisper-1", "transcription"),
        ("gpt-4o-transcribe", "transcription"),
        ("dall-e-3", "image"),
        ("gpt-image-1", "image"),
        ("gpt-4o", "chat"),
        ("deepseek-chat", "chat"),
    ],
)
def test_openai_model_names_decide_the_task(model, task):
    assert task_for_model(model) == task


@pytest.mark.parametrize(
    "call,param",
    [
        (lambda: speech_request(user(json.dumps({"input": "x", "speed": "fast"}))), "speed"),
        (lambda: speech_request(user(json.dumps({"input": "x", "speed": None}))), "speed"),
        (lambda: speech_request(user(json.dumps({"input": "x", "speed": 9}))), "speed"),
        (lambda: image_request(user("cat"), {"generation.width": "wide", "generation.height": 64}), "width"),
        (lambda: image_request(user("cat"), {"gen.batch_size": "three"}), "batch_size"),
        (lambda: image_request(user("cat"), {"gen.batch_size": 4, "gen.batch_count": 3}), "n"),
        (lambda: image_request(user("cat"), {"generation.seed": "lucky"}), "seed"),
        (lambda: image_request(user("cat"), {"generation.sampling_steps": 0}), "sampling_steps"),
        (lambda: transcription_request(user([{"type": "input_audio", "input_audio": {}}])), "conversations[0].content"),
        (lambda: transcription_request(user(json.dumps({"audio": "data:audio/wav,AAAA"}))), "conversations[0].content"),
        (
            lambda: transcription_request(
                user([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]),
                {"temperature": "hot"},
            ),
            "temperature",
        ),
    ],
)
def test_bad_values_in_the_chat_forms_name_their_field(call, param):
    with pytest.raises(InvalidRequestError) as err:
        call()
    assert err.value.param == param
