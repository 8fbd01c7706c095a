"""Speech, transcription, image generation and image input on real Ray deployments: the built-in
piper voice and Whisper tiny.en (real weights), and tiny random Stable Diffusion and vision-language
models of the real architectures (no such weights can be had offline: those check the path and the
shapes, not the pictures). Reached through the client's typed calls, Byzer-LLM's chat-shaped forms,
a prompt function, and ``byzerllm serve`` with the official openai client."""

from __future__ import annotations

import base64
import io
import json
import wave

import openai
import pytest
from PIL import Image as PILImage

import byzerllm
from byzerllm.audio import decode, word_error_rate
from byzerllm.errors import InvalidRequestError
from byzerllm.types import AudioPath

from ..conftest import ROOT, byzerllm_serve

pytestmark = pytest.mark.integration
KEY = "sk-mm-key"
SENTENCES = (ROOT / "tests/data/speech_sentences.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def speech_models(llm):
    """``test_tts`` (piper, the built-in voice) and ``test_stt`` (faster-whisper, tiny.en), 1 worker each."""
    llm.setup_num_workers(1)
    llm.deploy(model_path="builtin:piper-joe", udf_name="test_tts", infer_params={})
    llm.deploy(model_path="builtin:whisper-tiny.en", udf_name="test_stt", infer_params={"cpu_threads": 1})
    yield "test_tts", "test_stt"
    llm.undeploy("test_tts")
    llm.undeploy("test_stt")


@pytest.fixture(scope="module")
def image_models(llm, tiny_sd, tiny_vlm):
    """``test_sd`` (diffusers on a tiny random Stable Diffusion) and ``test_vlm`` (transformers on a
    tiny random vision-language model)."""
    llm.setup_num_workers(1)
    llm.deploy(model_path=str(tiny_sd), udf_name="test_sd", infer_params={"steps": 2})
    llm.deploy(model_path=str(tiny_vlm), udf_name="test_vlm", infer_params={})
    yield "test_sd", "test_vlm"
    llm.undeploy("test_sd")
    llm.undeploy("test_vlm")


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


def test_round_trip_ten_sentences_through_piper_and_whisper(llm, speech_models):
    tts, stt = speech_models
    heard = []
    for sentence in SENTENCES:
        spoken = llm.speech(sentence, response_format="wav", model=tts)
        assert spoken.format == "wav" and abs(wav_seconds(spoken.audio) - spoken.duration) < 0.05
        out = llm.transcribe(spoken.audio, language="en", model=stt)
        starts = [w["start"] for w in out.words]
        assert out.words and starts == sorted(starts)
        assert all(0 <= w["start"] <= w["end"] <= out.duration + 0.01 for w in out.words)
        assert abs(out.duration - spoken.duration) < 0.1
        heard.append(out.text)
    assert word_error_rate(" ".join(SENTENCES), " ".join(heard)) <= 0.15


def test_the_quick_guide_calls_run_as_written(llm, speech_models, tmp_path):
    """语音合成 and 语音识别 of the quick guide, only the model names changed."""
    tts, stt = speech_models
    llm_tts = byzerllm.ByzerLLM.from_default_model(tts)
    t = llm_tts.chat_oai(
        conversations=[
            {
                "role": "user",
                "content": json.dumps(
                    {"input": "hello, open_tts", "voice": "alloy", "response_format": "mp3"}, ensure_ascii=False
                ),
            }
        ]
    )
    mp3 = tmp_path / "voice.mp3"
    mp3.write_bytes(base64.b64decode(t[0].output))
    assert len(decode(mp3.read_bytes())) > 16000 * 0.3  # a playable MP3 of at least 0.3 s

    llm_stt = byzerllm.ByzerLLM.from_default_model(stt)

    @byzerllm.prompt(llm=llm_stt)
    def audio_to_text(audio_file: AudioPath):
        """
        {{ audio_file }}
        """

    v = json.loads(audio_to_text(AudioPath(value=str(mp3))))
    assert set(v) >= {"text", "task", "language", "duration", "segments", "words"}
    assert v["language"] == "english" and v["task"] == "transcribe"
    segment = v["segments"][0]
    assert set(segment) >= {
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    }
    assert v["words"] and 0.3 < v["duration"] < 5

    from byzerllm.types import Audio

    w = llm_stt.chat_oai(
        conversations=[
            {
                "role": "user",
                "content": json.dumps(
                    [{"audio": Audio.load_audio_from_path(str(mp3), only_content=True)}, {"text": "transcribe"}]
                ),
            }
        ]
    )
    assert json.loads(w[0].output)["words"]


def test_bad_audio_and_voice_are_named_and_the_workers_keep_serving(llm, speech_models):
    tts, stt = speech_models
    with pytest.raises(InvalidRequestError) as err:
        llm.transcribe(b"this is plain text, not audio", model=stt)
    assert err.value.param == "file"
    with pytest.raises(InvalidRequestError) as err:
        llm.speech("hi", voice="no-such-voice", model=tts)
    assert err.value.param == "voice" and "joe" in str(err.value)
    with pytest.raises(InvalidRequestError) as err:
        llm.speech("hi", response_format="ogg-vorbis", model=tts)
    assert err.value.param == "response_format"
    with pytest.raises(InvalidRequestError) as err:  # an embedding call on a speech model
        llm.emb(tts, "hello")
    assert err.value.param == "model" and "serves speech" in str(err.value)
    spoken = llm.speech("still here", model=tts)
    assert llm.transcribe(spoken.audio, model=stt).words
    assert llm.stat(tts)["total_workers"] == 1


@pytest.fixture(scope="module")
def server(speech_models, image_models, smollm2_chat):
    with byzerllm_serve("--api_key", KEY, "--request_timeout", "120") as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)


def test_server_audio_endpoints_with_the_openai_client(client, speech_models):
    tts, stt = speech_models
    speech = client.audio.speech.create(model=tts, voice="alloy", input=SENTENCES[0], response_format="wav")
    audio = speech.content
    assert audio[:4] == b"RIFF" and wav_seconds(audio) > 1
    verbose = client.audio.transcriptions.create(
        model=stt,
        file=("s.wav", audio),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert word_error_rate(SENTENCES[0], verbose.text) <= 0.2
    assert verbose.words and verbose.segments and verbose.duration > 1
    only_words = client.audio.transcriptions.create(
        model=stt, file=("s.wav", audio), response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert only_words.words and not getattr(only_words, "segments", None)
    plain = client.audio.transcriptions.create(model=stt, file=("s.wav", audio))
    assert plain.text.strip() == verbose.text.strip()
    srt = client.audio.transcriptions.create(model=stt, file=("s.wav", audio), response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ")
    vtt = client.audio.transcriptions.create(model=stt, file=("s.wav", audio), response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")
    text = client.audio.transcriptions.create(model=stt, file=("s.wav", audio), response_format="text")
    assert text.strip() == verbose.text.strip()
    mp3 = client.audio.speech.create(model=tts, voice="joe", input="short", response_format="mp3").content
    assert len(decode(mp3)) > 0


def test_server_audio_bad_input(client, speech_models):
    tts, stt = speech_models
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model=stt, file=("x.png", b"\x89PNG\r\n\x1a\nnot audio"))
    assert err.value.body["param"] == "file"
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model=tts, voice="nobody", input="hi")
    assert err.value.body["param"] == "voice"
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model=stt, file=("s.wav", b"RIFF"), response_format="docx")
    assert err.value.body["param"] == "response_format"
    assert client.audio.speech.create(model=tts, voice="joe", input="fine", response_format="wav").content


def test_saas_openai_speech_and_whisper_shapes_against_our_server(llm, server, speech_models):
    """saas/openai's tts-1 and whisper-1 shapes, sent to a real OpenAI-compatible server (ours)."""
    tts, stt = speech_models
    llm.setup_num_workers(1)
    common = {"saas.base_url": server + "/v1", "saas.api_key": KEY}
    llm.deploy(
        model_path="",
        pretrained_model_type="saas/openai",
        udf_name="saas_tts",
        infer_params={**common, "saas.model": tts, "saas.task": "speech"},
    )
    llm.deploy(
        model_path="",
        pretrained_model_type="saas/openai",
        udf_name="saas_stt",
        infer_params={**common, "saas.model": stt, "saas.task": "transcription"},
    )
    try:
        assert llm.get_meta(model="saas_tts")["tasks"] == ["speech"]
        t = llm.chat_oai(
            [{"role": "user", "content": json.dumps({"input": SENTENCES[1], "voice": "alloy"})}], model="saas_tts"
        )
        mp3 = base64.b64decode(t[0].output)
        out = llm.transcribe(mp3, model="saas_stt")
        assert word_error_rate(SENTENCES[1], out.text) <= 0.2 and out.words and out.segments
        assert out.language == "english"
    finally:
        llm.undeploy("saas_tts")
        llm.undeploy("saas_stt")


def test_saas_openai_image_and_vision_shapes_against_our_server(llm, server, image_models):
    """saas/openai's dall-e-3 (images.generate, b64_json) and vision chat (image_url parts) shapes."""
    sd, vlm = image_models
    llm.setup_num_workers(1)
    common = {"saas.base_url": server + "/v1", "saas.api_key": KEY}
    llm.deploy(
        model_path="",
        pretrained_model_type="saas/openai",
        udf_name="saas_sd",
        infer_params={**common, "saas.model": sd, "saas.task": "image"},
    )
    llm.deploy(
        model_path="",
        pretrained_model_type="saas/openai",
        udf_name="saas_vlm",
        infer_params={**common, "saas.model": vlm},
    )
    try:
        t = llm.chat_oai(
            [{"role": "user", "content": json.dumps({"input": "a cat", "size": "48x32"})}], model="saas_sd"
        )
        assert PILImage.open(io.BytesIO(base64.b64decode(t[0].output))).size == (48, 32)
        buf = io.BytesIO()
        PILImage.new("RGB", (32, 32), (10, 200, 30)).save(buf, format="PNG")
        image = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        parts = [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": "What is this?"}]
        out = llm.chat_oai([{"role": "user", "content": parts}], model="saas_vlm", llm_config={"max_length": 3})
        assert out[0].metadata["generated_tokens_count"] >= 1 and out[0].metadata["input_tokens_count"] > 16
    finally:
        llm.undeploy("saas_sd")
        llm.undeploy("saas_vlm")


def test_image_generation_quick_guide_and_server(llm, image_models, client):
    sd, _ = image_models
    llm_sd = byzerllm.ByzerLLM.from_default_model(sd)
    t = llm_sd.chat_oai(
        conversations=[
            {
                "role": "user",
                "content": json.dumps({"input": "a white siamese cat", "size": "64x64", "quality": "standard"}),
            }
        ]
    )
    image = PILImage.open(io.BytesIO(base64.b64decode(t[0].output)))
    assert image.format == "PNG" and image.size == (64, 64)
    cats = json.loads(
        llm_sd.chat_oai([{"role": "user", "content": "画一只猫"}], llm_config={"gen.batch_size": 2})[0].output
    )
    assert len(cats) == 2 and all(PILImage.open(io.BytesIO(base64.b64decode(c["img64"]))).size for c in cats)
    out = client.images.generate(model=sd, prompt="a cat", n=2, size="64x32", response_format="b64_json")
    sizes = [PILImage.open(io.BytesIO(base64.b64decode(d.b64_json))).size for d in out.data]
    assert sizes == [(64, 32), (64, 32)]
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(model=sd, prompt="a cat", size="65x64")
    assert err.value.body["param"] == "size"


def test_vision_chat_through_the_server_and_a_text_only_model_refuses_images(client, image_models, smollm2_chat):
    _, vlm = image_models
    buf = io.BytesIO()
    PILImage.new("RGB", (32, 32), (200, 30, 30)).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is in the image?"}]
    out = client.chat.completions.create(model=vlm, messages=[{"role": "user", "content": parts}], max_tokens=5)
    assert out.usage.completion_tokens >= 1 and out.usage.prompt_tokens > 5
    chunks = list(
        client.chat.completions.create(
            model=vlm, messages=[{"role": "user", "content": parts}], max_tokens=5, stream=True
        )
    )
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=smollm2_chat, messages=[{"role": "user", "content": parts}])
    assert err.value.body["param"] == "messages.[0].content"  # OpenAI's spelling of the field
    bad = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=vlm, messages=[{"role": "user", "content": bad}], max_tokens=5)
    assert client.chat.completions.create(model=vlm, messages=[{"role": "user", "content": parts}], max_tokens=2)
