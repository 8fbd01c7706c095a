"""Causal and vision-language models on Hugging Face transformers (torch, CPU by default).

The model is a Hugging Face model folder (``config.json``, weights, tokenizer files) or a GGUF file,
which transformers dequantizes into a plain torch model (``builtin:smollm2`` is one). The
conversation is rendered with the tokenizer's chat template; ``model.generate`` runs on a
background thread and its text is streamed through ``TextIteratorStreamer``. Stop strings are held
back until they can no longer match, as on ``llama_cpp``. There is no grammar here: typed output is
asked for in the prompt and validated by the client (``support_response_format`` is empty).

A vision-language folder (``models.is_vision_language_folder``: Llava, Idefics3/SmolVLM, Qwen2-VL,
Gemma 3...) is loaded with ``AutoModelForImageTextToText`` and its ``AutoProcessor``: messages may
then hold OpenAI ``image_url`` parts with ``data:`` URLs (base64 PNG, JPEG or any format Pillow
reads, as ``byzerllm.multimodal`` writes them), rendered by the processor's chat template as
``{"type": "image"}`` parts, the decoded images given to the processor.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..errors import BackendError, InvalidRequestError, ModelPathError
from ..types import ChatChunk, ChatRequest
from .base import Backend, Cancelled, _never, check_input_length, text_messages
from .llama_cpp import _held_suffix
from .models import forget_gguf_quantization, is_vision_language_folder, lora_base, resolve_model_path
from .options import BackendOptions

# the same defaults as the llama_cpp backend, so one model samples alike on both
DEFAULT_SAMPLING = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.0}
REQUEST_OPTIONS = frozenset({"top_k", "min_p", "repetition_penalty", "ignore_eos"})
DTYPES = ("float32", "bfloat16", "float16")
# the largest image file a message may carry, decoded: OpenAI's limit per image
MAX_IMAGE_BYTES = 20 * 1024 * 1024
# torch's global RNG is what ``generate`` samples from: one generation at a time in a process, so
# a seeded request gives the same text whatever runs beside it
_GENERATE_LOCK = threading.Lock()

log = logging.getLogger("byzerllm.backends.transformers")


class TransformersOptions(BackendOptions):
    n_threads: int = Field(2, ge=1, description="torch CPU threads (set for the whole worker process)")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="weights and activations dtype (a GGUF is dequantized to it)"
    )
    max_model_len: int = Field(
        2048, ge=1, description="context length in tokens, prompt and generation (capped by the model's own)"
    )
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="torch device; auto: cuda when available")
    trust_remote_code: bool = Field(False, description="run the model folder's own Python code")
    chat_template: str | None = Field(
        None, description="a Jinja chat template (default: the tokenizer's own, or a vision model's processor's)"
    )
    max_image_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="a vision-language model's largest image (width x height pixels); a larger image_url is refused",
    )


def _number(settings: dict[str, Any], key: str, kind: type) -> Any:
    try:
        return kind(settings[key])
    except (TypeError, ValueError):
        raise InvalidRequestError(
            f"generation parameter {key}={settings[key]!r} is not a valid {kind.__name__}", param=key
        ) from None


def decode_image(part: dict[str, Any], where: str, max_pixels: int) -> Any:
    """The RGB ``PIL.Image`` of an OpenAI ``image_url`` part (``{"type": "image_url", "image_url":
    {"url": "data:image/png;base64,..."}}``, or the URL as a string). Only ``data:`` URLs are read
    (base64 of any format Pillow opens: PNG, JPEG, WebP, GIF...); http(s) URLs are not fetched.

    Raises ``InvalidRequestError`` with ``param=where`` (the part, ``conversations[i].content[j]``)
    for a URL that is not a base64 ``data:image/`` URL, data over 20 MB (``MAX_IMAGE_BYTES``), an
    image over ``max_pixels`` (width x height) or data that is not an image.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise BackendError("image input needs Pillow: pip install 'byzerllm[image]'") from None

    url = part.get("image_url")
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(f"{where} is an image_url part without a url", param=where)
    if url.startswith(("http://", "https://")):
        raise InvalidRequestError(
            f"{where} is an http(s) image URL, which the transformers backend does not fetch; send the image "
            "inline as a data: URL (byzerllm.types.Image.load_image_from_path(path, only_content=True))",
            param=where,
        )
    head, sep, data = url.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64") and sep):
        raise InvalidRequestError(
            f"{where} is not an image data URL; accepted: data:image/<png|jpeg|...>;base64,<data>", param=where
        )
    if len(data) > MAX_IMAGE_BYTES * 4 // 3 + 4:  # base64 is 4 characters per 3 bytes
        raise InvalidRequestError(
            f"{where} is an image of about {len(data) * 3 // 4 / 2**20:.1f} MB; the limit is "
            f"{MAX_IMAGE_BYTES // 2**20} MB",
            param=where,
        )
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{where} has image data that is not valid base64", param=where) from None
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size  # read from the header: nothing decoded yet
    except Image.DecompressionBombError:
        width = height = None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InvalidRequestError(
            f"{where} cannot be decoded as an image (send PNG, JPEG, GIF or WebP)", param=where
        ) from None
    if width is None or height is None or width * height > max_pixels:
        size = f"{width}x{height} pixels" if width else "over Pillow's decompression-bomb limit"
        raise InvalidRequestError(
            f"{where} is an image of {size}; the limit is {max_pixels} pixels (infer_param max_image_pixels)",
            param=where,
        )
    try:
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError):  # a truncated or corrupt body after a valid header
        raise InvalidRequestError(
            f"{where} cannot be decoded as an image: the data is cut short or corrupt", param=where
        ) from None


def vision_messages(request: ChatRequest, max_pixels: int) -> tuple[list[dict[str, Any]], list[Any], str]:
    """``request.messages`` as a vision processor's chat template takes them (every content a list
    of ``{"type": "text", "text"}`` and ``{"type": "image"}`` parts), the decoded images in their
    order, and the assistant text to continue (``continue_final_message``; else "").

    Raises ``InvalidRequestError`` naming the part (``conversations[i].content[j]``) for a part that is
    neither text nor ``image_url``, or an image ``decode_image`` refuses; naming ``messages`` for a
    continuation without a final assistant message of text.
    """
    messages: list[dict[str, Any]] = []
    images: list[Any] = []
    for i, msg in enumerate(request.messages):
        content = msg.get("content")
        parts: list[dict[str, Any]] = []
        if isinstance(content, list):
            for j, part in enumerate(content):
                where = f"conversations[{i}].content[{j}]"
                kind = part.get("type", "text") if isinstance(part, dict) else type(part).__name__
                if kind == "text" and isinstance(part, dict) and "text" in part:
                    parts.append({"type": "text", "text": part["text"]})
                elif kind == "image_url" and isinstance(part, dict):
                    images.append(decode_image(part, where, max_pixels))
                    parts.append({"type": "image"})
                else:
                    raise InvalidRequestError(
                        f"{where} is a {kind!r} part; the transformers backend takes text and image_url parts",
                        param=where,
                    )
        elif content:
            parts.append({"type": "text", "text": str(content)})
        messages.append({"role": msg["role"], "content": parts})
    prefill = ""
    if request.continue_final_message:
        last = messages.pop() if messages else None
        if last is None or last["role"] != "assistant" or any(p["type"] != "text" for p in last["content"]):
            raise InvalidRequestError(
                "continue_final_message needs the last message to be an assistant message of text", param="messages"
            )
        prefill = "".join(p["text"] for p in last["content"])
    return messages, images, prefill


def _streamer_class():
    from transformers import TextIteratorStreamer

    class CountingStreamer(TextIteratorStreamer):
        """Queues ``(text, tokens generated so far)``; ``None`` ends the stream."""

        generated = 0

        def put(self, value) -> None:
            if not (self.skip_prompt and self.next_tokens_are_prompt):
                self.generated += int(value.numel())
            super().put(value)

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if stream_end:  # bytes of a character cut off by max_length are dropped, not shown as U+FFFD
                text = text.rstrip("\ufffd")
            self.text_queue.put((text, self.generated))
            if stream_end:
                self.text_queue.put(None)

    return CountingStreamer


class TransformersBackend(Backend):
    """A causal or vision-language model on transformers: chat and raw completion, streamed.

    ``model_path`` is a Hugging Face model folder (``config.json`` with weights and tokenizer files),
    a ``.gguf`` file (dequantized to ``dtype`` by transformers' GGUF loader; needs the ``gguf``
    package) or ``builtin:smollm2``. Deploy options: ``n_threads`` (torch CPU threads, default 2; a
    process-wide setting), ``dtype`` (float32, bfloat16 or float16), ``max_model_len`` (prompt plus
    generated tokens, default 2048, capped by the model's ``max_position_embeddings``), ``device``
    (cpu, cuda, auto), ``trust_remote_code``, ``chat_template`` (replaces the tokenizer's and the
    processor's), ``max_image_pixels`` (default 4096x4096).

    A vision-language folder (``is_vision_language_folder``) takes ``image_url`` parts with ``data:``
    URLs (``decode_image``; up to 20 MB and ``max_image_pixels`` each); its ``meta()`` says
    ``input_modalities: ["text", "image"]`` and its input token counts include the image tokens. A
    text-only model refuses image parts (``InvalidRequestError`` naming ``conversations[i].content``).

    Requests take ``max_length`` (new tokens), ``temperature`` (0: greedy), ``top_p``, ``stop``,
    ``seed`` and the request options ``top_k``, ``min_p``, ``repetition_penalty``, ``ignore_eos``
    (generate exactly ``max_length`` tokens). The last chunk has ``finish_reason`` ``stop`` (end of
    turn or a stop string), ``length`` (``max_length`` or the context is full) or ``cancelled``.

    Raises ``ModelPathError`` for a missing path, a folder without ``config.json`` or a file that is
    not a GGUF, and ``BackendError`` when torch or transformers is not installed, transformers cannot
    load the model, or the device is missing.
    """

    name = "transformers"
    Options = TransformersOptions
    request_options = REQUEST_OPTIONS
    thread_safe = False

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)
        cfg = self.config
        self.path = resolve_model_path(model_path)
        path = Path(self.path)
        adapter = lora_base(path)
        if adapter:  # a LoRA adapter folder: its base model, with the adapter merged in after loading
            path = Path(resolve_model_path(adapter))
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ModelPathError(
                    f"model_path {path} has no config.json: the transformers backend takes a Hugging Face model "
                    "folder (config.json, weights, tokenizer files) or a .gguf file",
                    param="model_path",
                    path=str(path),
                )
            folder, gguf_file = path, None
        elif path.suffix.lower() == ".gguf":
            folder, gguf_file = path.parent, path.name
        else:
            raise ModelPathError(
                f"model_path {path} is neither a Hugging Face model folder nor a .gguf file",
                param="model_path",
                path=str(path),
            )
        # a vision-language folder: its processor renders image parts (a GGUF is always text-only here)
        self.vision = gguf_file is None and is_vision_language_folder(folder)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise BackendError(
                f"the transformers backend needs torch and transformers ({exc}): pip install 'byzerllm[transformers]'"
            ) from None

        hf_logging.disable_progress_bar()  # a loading bar per worker start is noise in logs
        torch.set_num_threads(int(cfg["n_threads"]))
        device = cfg["device"]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise BackendError("infer_param device=cuda, but torch sees no CUDA device here; use device=cpu")
        self.device = device
        load = {"gguf_file": gguf_file} if gguf_file else {}
        trust = bool(cfg["trust_remote_code"])
        self.processor = None
        try:
            if self.vision:
                self.processor = AutoProcessor.from_pretrained(folder, trust_remote_code=trust)
                self.tokenizer = getattr(self.processor, "tokenizer", None)
                if self.tokenizer is None:
                    self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
                self.model = AutoModelForImageTextToText.from_pretrained(
                    folder, dtype=getattr(torch, cfg["dtype"]), trust_remote_code=trust
                )
            else:
                self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust, **load)
                # the GGUF converter draws its own tqdm bar, which disable_progress_bar does not reach
                with contextlib.redirect_stderr(io.StringIO()) if gguf_file else contextlib.nullcontext():
                    self.model = AutoModelForCausalLM.from_pretrained(
                        folder, dtype=getattr(torch, cfg["dtype"]), trust_remote_code=trust, **load
                    )
        except Exception as exc:  # transformers reports bad files as OSError/ValueError/KeyError...
            raise BackendError(f"transformers could not load {path}: {exc}") from None
        if gguf_file:
            forget_gguf_quantization(self.model)
        if adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, self.path).merge_and_unload()
        self.model.to(device).eval()
        if cfg["chat_template"]:
            self.tokenizer.chat_template = cfg["chat_template"]
            if self.processor is not None:
                self.processor.chat_template = cfg["chat_template"]
        # a vision-language model's context is its text model's
        text_config = self.model.config.get_text_config() if self.vision else self.model.config
        own = getattr(text_config, "max_position_embeddings", None)
        self.n_ctx = min(int(cfg["max_model_len"]), int(own)) if own else int(cfg["max_model_len"])
        # end-of-turn tokens: the generation config's (a list for many chat models) and the tokenizer's
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {*(eos if isinstance(eos, list) else [eos] if eos is not None else [])}
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)
        pad = self.model.generation_config.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.pad_token_id
        if self.pad_id is None and self.eos_ids:
            self.pad_id = min(self.eos_ids)
        self.architectures = list(self.model.config.architectures or [type(self.model).__name__])
        self.model_name = Path(self.path).name if adapter else path.stem if gguf_file else path.name
        self._streamer = _streamer_class()

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        tok = self.tokenizer
        if request.prompt is not None:
            return tok(request.prompt, add_special_tokens=True)["input_ids"]
        if not tok.chat_template:
            raise InvalidRequestError(
                f"{self.path} has no chat template, so chat messages cannot be rendered; set one with infer_params "
                "chat_template=..., or pass a prompt (a client template: setup_template)",
                param="messages",
            )
        messages, prefill = text_messages(request, "transformers")
        try:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # jinja's TemplateError, or raise_exception() inside the template
            raise InvalidRequestError(f"the chat template refused the messages: {exc}", param="messages") from None
        # the template writes its own special tokens (BOS included, when the model has one)
        return tok(text + prefill, add_special_tokens=False)["input_ids"]

    def _chat_template(self) -> str | None:
        """The template chat messages are rendered with: a vision model's processor's, else the
        tokenizer's (``chat_template`` replaces both)."""
        return getattr(self.processor, "chat_template", None) or self.tokenizer.chat_template

    def _vision_inputs(self, request: ChatRequest) -> dict[str, Any]:
        """The processor's tensors for a vision-language model: ``input_ids`` (image tokens
        expanded), ``attention_mask`` and the image tensors (``pixel_values``...) when the messages
        hold images."""
        proc = self.processor
        template = self._chat_template()
        if not template:
            raise InvalidRequestError(
                f"{self.path} has no chat template, so chat messages cannot be rendered; set one with infer_params "
                "chat_template=..., or pass a prompt (a client template: setup_template)",
                param="messages",
            )
        messages, images, prefill = vision_messages(request, int(self.config["max_image_pixels"]))
        try:
            text = proc.apply_chat_template(
                messages, chat_template=template, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja's TemplateError, or raise_exception() inside the template
            raise InvalidRequestError(f"the chat template refused the messages: {exc}", param="messages") from None
        try:
            # the template writes its own special tokens (BOS included, when the model has one)
            return dict(
                proc(text=[text + prefill], images=images or None, return_tensors="pt", add_special_tokens=False)
            )
        except Exception as exc:  # e.g. a template that does not render image parts: images without tokens
            log.warning("the processor refused the messages", exc_info=exc)  # its text may hold paths
            raise InvalidRequestError(
                f"the {type(proc).__name__} could not combine the messages with their {len(images)} image(s) "
                f"({type(exc).__name__}); does the model's chat template render image parts?",
                param="messages",
            ) from None

    def _prompt_inputs(self, request: ChatRequest) -> dict[str, Any]:
        """The model's inputs for ``request`` as ``[1, n]`` tensors (a vision model's images too)."""
        import torch

        if self.processor is not None and request.prompt is None:
            return self._vision_inputs(request)
        ids = torch.tensor([self._prompt_ids(request)], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def _generation_kwargs(self, request: ChatRequest, max_new: int) -> dict[str, Any]:
        s = {**DEFAULT_SAMPLING, "ignore_eos": False, **request.extra}
        if request.temperature is not None:
            s["temperature"] = request.temperature
        if request.top_p is not None:
            s["top_p"] = request.top_p
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "eos_token_id": sorted(self.eos_ids) or None,
            "pad_token_id": self.pad_id,
            "repetition_penalty": _number(s, "repetition_penalty", float),
        }
        temperature = _number(s, "temperature", float)
        if temperature <= 0:
            kwargs["do_sample"] = False
        else:
            kwargs.update(
                do_sample=True,
                temperature=temperature,
                top_p=_number(s, "top_p", float),
                top_k=_number(s, "top_k", int),
                min_p=_number(s, "min_p", float),
            )
        if s["ignore_eos"]:
            kwargs["min_new_tokens"] = max_new  # end-of-turn tokens are masked until max_length
        return kwargs

    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        """Yield text deltas; the last chunk has ``finish_reason`` and the token counts (end-of-turn
        token not counted). Raises ``InvalidRequestError`` (``param="messages"``) for a prompt over
        ``max_model_len`` or the request's max input length, or messages without a chat template,
        ``InvalidRequestError`` (``param="response_format"``) for a JSON response format, and
        ``BackendError`` when generation fails."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        if request.response_format is not None and request.response_format.get("type") != "text":
            raise InvalidRequestError(
                "the transformers backend has no response_format (no grammar); typed outputs use the prompt strategy",
                param="response_format",
            )
        inputs = {
            key: value.to(self.device, dtype=self.model.dtype) if value.is_floating_point() else value.to(self.device)
            for key, value in self._prompt_inputs(request).items()
            if isinstance(value, torch.Tensor)
        }
        n_prompt = int(inputs["input_ids"].shape[1])  # a vision model's image tokens included
        check_input_length(request, n_prompt)
        room = self.n_ctx - n_prompt
        if room <= 0:
            raise InvalidRequestError(
                f"the prompt is {n_prompt} tokens; max_model_len is {self.n_ctx}", param="messages"
            )
        max_new = min(request.max_tokens or room, room)
        kwargs = self._generation_kwargs(request, max_new)
        halt = threading.Event()  # set by the reader: a stop string matched, or it went away
        was_cancelled = threading.Event()

        class Halt(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                if not halt.is_set() and cancelled():
                    was_cancelled.set()
                stop = halt.is_set() or was_cancelled.is_set()
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        streamer = self._streamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with _GENERATE_LOCK, torch.inference_mode():
                    if request.seed is not None:
                        torch.manual_seed(int(request.seed))
                    result["ids"] = self.model.generate(
                        **inputs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([Halt()]),
                        **kwargs,
                    )[0, n_prompt:].tolist()
            except BaseException as exc:
                result["error"] = exc
            finally:
                streamer.text_queue.put(None)  # the reader's end, also when generate failed

        thread = threading.Thread(target=run, name=f"generate-{request.request_id}", daemon=True)
        thread.start()
        stops = request.stop
        held = ""
        generated = 0
        stopped = False
        try:
            while (item := streamer.text_queue.get()) is not None:
                text, generated = item
                held += text
                if stops:
                    hit = min((i for i in (held.find(x) for x in stops) if i >= 0), default=-1)
                    if hit >= 0:
                        halt.set()
                        stopped = True
                        if hit:
                            yield ChatChunk(held[:hit], None, n_prompt, generated)
                        held = ""
                        break
                    keep = _held_suffix(held, stops)
                    out, held = (held[:-keep], held[-keep:]) if keep else (held, "")
                else:
                    out, held = held, ""
                if out:
                    yield ChatChunk(out, None, n_prompt, generated)
        finally:
            halt.set()
            thread.join()
        if "error" in result:
            raise BackendError(f"transformers generation failed: {result['error']}") from result["error"]
        tokens = result.get("ids", [])
        if stopped:
            finish = "stop"
        elif was_cancelled.is_set():
            finish, generated = "cancelled", len(tokens)
        elif tokens and tokens[-1] in self.eos_ids:
            finish, generated = "stop", len(tokens) - 1
        else:
            finish, generated = "length", len(tokens)
        if held:  # a partial stop string that never completed is ordinary text
            yield ChatChunk(held, None, n_prompt, generated)
        yield ChatChunk("", finish_reason=finish, input_tokens=n_prompt, generated_tokens=generated)

    def meta(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model_path": self.path,
            "model_name": self.model_name,
            "model_type": "chat",
            "tasks": ["chat"],
            "max_model_len": self.n_ctx,
            "support_stream": True,
            "input_modalities": ["text", "image"] if self.vision else ["text"],
            "support_chat_template": bool(self._chat_template()),
            # no grammar: typed outputs are asked for in the prompt and validated (the client's prompt strategy)
            "support_response_format": [],
            "support_continue_final_message": True,
            "architectures": self.architectures,
            "dtype": self.config["dtype"],
            "device": self.device,
            "n_threads": int(self.config["n_threads"]),
        }

    def close(self) -> None:
        self.model = None
