"""Causal language models on Hugging Face transformers (torch, CPU by default).

The model is a Hugging Face model folder (``config.json``, weights, tokenizer files) or a GGUF file,
which transformers dequantizes into a plain torch model (``builtin:smollm2`` is one). The
conversation is rendered with the tokenizer's chat template; ``model.generate`` runs on a
background thread and its text is streamed through ``TextIteratorStreamer``. Stop strings are held
back until they can no longer match, as on ``llama_cpp``. There is no grammar here: typed output is
asked for in the prompt and validated by the client (``support_response_format`` is empty).
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..errors import BackendError, InvalidRequestError, ModelPathError
from ..types import ChatChunk, ChatRequest
from .base import Backend, Cancelled, _never, check_input_length, text_messages
from .llama_cpp import _held_suffix
from .models import forget_gguf_quantization, lora_base, resolve_model_path
from .options import BackendOptions

# the same defaults as the llama_cpp backend, so one model samples alike on both
DEFAULT_SAMPLING = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.0}
REQUEST_OPTIONS = frozenset({"top_k", "min_p", "repetition_penalty", "ignore_eos"})
DTYPES = ("float32", "bfloat16", "float16")
# torch's global RNG is what ``generate`` samples from: one generation at a time in a process, so
# a seeded request gives the same text whatever runs beside it
_GENERATE_LOCK = threading.Lock()


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
    chat_template: str | None = Field(None, description="a Jinja chat template (default: the tokenizer's own)")


def _number(settings: dict[str, Any], key: str, kind: type) -> Any:
    try:
        return kind(settings[key])
    except (TypeError, ValueError):
        raise InvalidRequestError(
            f"generation parameter {key}={settings[key]!r} is not a valid {kind.__name__}", param=key
        ) from None


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
    """A causal language model on transformers: chat and raw completion, streamed.

    ``model_path`` is a Hugging Face model folder (``config.json`` with weights and tokenizer files),
    a ``.gguf`` file (dequantized to ``dtype`` by transformers' GGUF loader; needs the ``gguf``
    package) or ``builtin:smollm2``. Deploy options: ``n_threads`` (torch CPU threads, default 2; a
    process-wide setting), ``dtype`` (float32, bfloat16 or float16), ``max_model_len`` (prompt plus
    generated tokens, default 2048, capped by the model's ``max_position_embeddings``), ``device``
    (cpu, cuda, auto), ``trust_remote_code``, ``chat_template`` (replaces the tokenizer's).

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
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
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
        try:
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
        own = getattr(self.model.config, "max_position_embeddings", None)
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
        ids = self._prompt_ids(request)
        n_prompt = len(ids)
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
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)

        def run() -> None:
            try:
                with _GENERATE_LOCK, torch.inference_mode():
                    if request.seed is not None:
                        torch.manual_seed(int(request.seed))
                    result["ids"] = self.model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
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
            "support_chat_template": bool(self.tokenizer.chat_template),
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
