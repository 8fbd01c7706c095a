"""Images in-process: text to image on the diffusers backend (a tiny random Stable Diffusion) and
image input on the transformers backend (a tiny random Llava). Random weights of the real
architectures: the tests check the path and the shapes, never what is drawn or said."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("diffusers")
PIL = pytest.importorskip("PIL.Image")

from byzerllm.backends import create_backend  # noqa: E402
from byzerllm.backends.models import default_backend_for, is_causal_lm_folder, is_vision_language_folder  # noqa: E402
from byzerllm.errors import InvalidRequestError  # noqa: E402
from byzerllm.types import ChatRequest, ImageRequest  # noqa: E402

torch.set_num_threads(1)


def png_url(width: int = 40, height: int = 30, color=(200, 30, 30), fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    PIL.new("RGB", (width, height), color).save(buf, format=fmt)
    mime = "jpeg" if fmt == "JPEG" else fmt.lower()
    return f"data:image/{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"


def cut_png_url() -> str:
    """A PNG cut after its header: the size reads, the pixels do not."""
    data = base64.b64decode(png_url(64, 64, (10, 200, 90)).partition(",")[2])
    return "data:image/png;base64," + base64.b64encode(data[:60]).decode()


def image_msg(url: str, text: str = "What is in this picture?") -> ChatRequest:
    parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    return ChatRequest(messages=[{"role": "user", "content": parts}], max_tokens=6, temperature=0)


def decoded(png: bytes):
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return PIL.open(io.BytesIO(png))


# ---------------------------------------------------------------------------------------------
# diffusers


@pytest.fixture(scope="module")
def sd(tiny_sd):
    b = create_backend("diffusers", str(tiny_sd), {"n_threads": 1, "steps": 2})
    yield b
    b.close()


def test_a_request_gives_a_png_of_the_size_asked(sd):
    resp = sd.generate_images(ImageRequest(prompt="a cat on the mat", size="48x24", steps=2))
    assert len(resp.images) == 1 and resp.time_cost > 0
    image = decoded(resp.images[0])
    assert image.format == "PNG" and image.size == (48, 24)


def test_the_default_size_is_the_models_native_one(sd):
    meta = sd.get_meta()
    assert meta["default_size"] == "32x32" and meta["tasks"] == ["image"]
    assert meta["sampler_name"] == "euler_a" and meta["scheduler"] == "EulerAncestralDiscreteScheduler"
    assert meta["schedulers"]["dpm++_2m_karras"] == "DPMSolverMultistepScheduler"
    assert meta["options"]["steps"] == 2 and meta["options"]["guidance_scale"] == 7.5
    assert decoded(sd.generate_images(ImageRequest(prompt="a cat")).images[0]).size == (32, 32)


def test_n_images_and_a_seed_repeats_them(sd):
    ask = ImageRequest(prompt="the cat", n=3, seed=42, negative_prompt="blurry", guidance_scale=5.0)
    first = sd.generate_images(ask).images
    assert len(first) == 3 and len(set(first)) == 3  # one batch, three different noises
    assert sd.generate_images(ask).images == first
    other = sd.generate_images(ImageRequest(prompt="the cat", n=3, seed=43, negative_prompt="blurry")).images
    assert other != first


def test_another_sampler_is_a_deploy_option(tiny_sd):
    b = create_backend("diffusers", str(tiny_sd), {"n_threads": 1, "sampler_name": "dpm++_2m_karras"})
    sched = b.pipe.scheduler
    assert type(sched).__name__ == "DPMSolverMultistepScheduler" and sched.config.use_karras_sigmas
    assert decoded(b.generate_images(ImageRequest(prompt="a cat", steps=3, seed=1)).images[0]).size == (32, 32)
    with pytest.raises(InvalidRequestError) as info:
        create_backend("diffusers", str(tiny_sd), {"sampler_name": "euler_ancestral"})
    assert info.value.param == "sampler_name" and "euler_a" in str(info.value)


@pytest.mark.parametrize(
    "fields,param,message",
    [
        ({"size": "big"}, "size", "multiple of 8"),
        ({"size": "30x32"}, "size", "multiple of 8"),
        ({"size": "4096x4096"}, "size", "to 2048"),
        ({"n": 0}, "n", "1 to 10"),
        ({"n": 11}, "n", "1 to 10"),
        ({"prompt": "  "}, "prompt", "empty"),
        ({"steps": 0}, "steps", "1 to 500"),
        ({"guidance_scale": -1}, "guidance_scale", "0 to 50"),
    ],
)
def test_bad_requests_name_the_field(sd, fields, param, message):
    with pytest.raises(InvalidRequestError) as info:
        sd.generate_images(ImageRequest(**{"prompt": "a cat", **fields}))
    assert info.value.param == param and message in str(info.value)


def test_a_folder_without_a_pipeline_is_refused(tiny_llama):
    from byzerllm.errors import ModelPathError

    with pytest.raises(ModelPathError, match="model_index.json"):
        create_backend("diffusers", str(tiny_llama), {})


# ---------------------------------------------------------------------------------------------
# vision chat on transformers


@pytest.fixture(scope="module")
def vlm(tiny_vlm):
    b = create_backend("transformers", str(tiny_vlm), {"n_threads": 1})
    yield b
    b.close()


def test_a_vision_folder_is_detected_and_says_it_reads_images(vlm, tiny_vlm, tiny_llama):
    assert is_vision_language_folder(tiny_vlm) and not is_causal_lm_folder(tiny_vlm)
    assert not is_vision_language_folder(tiny_llama)
    assert default_backend_for(str(tiny_vlm)) == "transformers"
    meta = vlm.get_meta()
    assert meta["input_modalities"] == ["text", "image"] and meta["architectures"] == ["LlavaForConditionalGeneration"]
    assert meta["max_model_len"] == 512 and meta["support_chat_template"]


def test_an_image_and_text_give_a_completion_and_the_image_is_seen(vlm):
    with_image = vlm.chat(image_msg(png_url()))
    assert with_image.generated_tokens == 6 and with_image.finish_reason == "length"
    text_only = vlm.chat(ChatRequest(messages=[{"role": "user", "content": "What is in this picture?"}], max_tokens=6))
    # the processor expanded the image into 16 image tokens (32x32 pixels, 8-pixel patches)
    assert with_image.input_tokens == text_only.input_tokens + 16
    two = ChatRequest(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": png_url(fmt="JPEG")}},
                    {"type": "image_url", "image_url": png_url(8, 64, (0, 0, 255))},  # the URL as a string
                    {"type": "text", "text": "What is in this picture?"},
                ],
            }
        ],
        max_tokens=6,
        temperature=0,
    )
    assert vlm.chat(two).input_tokens == text_only.input_tokens + 32


def test_a_vision_stream_has_chunks_and_counts(vlm):
    chunks = list(vlm.stream(image_msg(png_url(), "Describe it.")))
    assert len([c for c in chunks if c.delta]) >= 1
    last = chunks[-1]
    assert last.finish_reason == "length" and last.generated_tokens == 6 and last.input_tokens > 16


def test_the_pixels_reach_the_logits(vlm):
    """Random weights: the next-token logits, not the text, show that the image is read."""
    import torch

    def logits(color: tuple[int, int, int]) -> torch.Tensor:
        with torch.no_grad():
            return vlm.model(**vlm._prompt_inputs(image_msg(png_url(color=color)))).logits[0, -1]

    red = logits((255, 0, 0))
    assert torch.equal(red, logits((255, 0, 0)))
    assert not torch.allclose(red, logits((0, 0, 255)))


@pytest.mark.parametrize(
    "url,message",
    [
        ("data:image/png;base64,bm90IGFuIGltYWdl", "cannot be decoded"),
        ("data:image/png;base64,***", "not valid base64"),
        (cut_png_url(), "cannot be decoded"),
        ("https://example.com/cat.png", "does not fetch"),
        ("data:text/plain;base64,aGk=", "not an image data URL"),
        (png_url(5000, 4000), "limit is 16777216 pixels"),
    ],
)
def test_bad_image_data_names_the_part(vlm, url, message):
    req = ChatRequest(
        messages=[
            {"role": "system", "content": "You describe images."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": url}}],
            },
        ]
    )
    with pytest.raises(InvalidRequestError) as info:
        vlm.chat(req)
    assert info.value.param == "conversations[1].content[1]" and message in str(info.value)


def test_an_image_over_20_mb_is_refused_before_decoding(vlm):
    url = "data:image/png;base64," + "A" * (28 * 2**20)
    with pytest.raises(InvalidRequestError, match="limit is 20 MB") as info:
        vlm.chat(image_msg(url))
    assert info.value.param == "conversations[0].content[0]"


def test_max_image_pixels_is_a_deploy_option(tiny_vlm):
    small = create_backend("transformers", str(tiny_vlm), {"n_threads": 1, "max_image_pixels": 1000})
    with pytest.raises(InvalidRequestError, match="40x30 pixels; the limit is 1000 pixels"):
        small.chat(image_msg(png_url(40, 30)))
    assert small.chat(image_msg(png_url(20, 20))).generated_tokens == 6


def test_a_text_only_model_refuses_an_image_part(tiny_llama):
    b = create_backend("transformers", str(tiny_llama), {"n_threads": 1})
    assert b.get_meta()["input_modalities"] == ["text"]
    with pytest.raises(InvalidRequestError) as info:
        b.chat(image_msg(png_url()))
    assert info.value.param == "conversations[0].content" and "takes text only" in str(info.value)


def test_tiny_models_are_offline_folders(tiny_sd, tiny_vlm):
    assert (Path(tiny_sd) / "model_index.json").is_file() and (Path(tiny_sd) / "tokenizer").is_dir()
    assert (Path(tiny_vlm) / "chat_template.jinja").is_file() or "chat_template" in (
        Path(tiny_vlm) / "processor_config.json"
    ).read_text()
