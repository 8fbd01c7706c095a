"""GGUF models on llama.cpp (through llama-cpp-python).

The conversation is rendered with the GGUF file's own chat template (``tokenizer.chat_template``
in its metadata), then tokens are generated one at a time so that each one can be streamed,
counted exactly, cancelled, and decoded as UTF-8 across token boundaries (a Chinese character
may span two tokens). Stop strings are held back until they can no longer match.
"""

from __future__ import annotations

import codecs
import json
import random
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..errors import BackendError, InvalidRequestError
from ..types import ChatChunk, ChatRequest
from .base import Backend, Cancelled, _never, check_input_length, text_messages
from .models import resolve_model_path
from .options import BackendOptions

# Sampling defaults are llama.cpp's own (llama-cpp-python ``Llama.create_completion``).
DEFAULT_SAMPLING = {
    "temperature": 0.8,
    "top_p": 0.95,
    "top_k": 40,
    "min_p": 0.05,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}
GRAMMAR_REPETITION_PENALTY = 1.15
# ``ignore_eos`` (as in llama.cpp's server and vLLM) generates through end-of-turn tokens up to
# max_length: fixed-length generations for benchmarks and tests.
# the LLM-as-judge reranker asks for a question the passage answers and scores the query as that question
JUDGE_QUESTION = "Write a question that this passage answers."
JUDGE_MAX_QUERY_TOKENS = 64
REQUEST_OPTIONS = frozenset({*DEFAULT_SAMPLING, "ignore_eos"} - {"temperature", "top_p"})


# llama.cpp's ``enum llama_pooling_type``; ``none`` (per-token vectors) and ``rank`` (a reranker's
# classification head) are not sentence embeddings and are not offered
POOLING_TYPES = {"mean": 1, "cls": 2, "last": 3}
POOLING_NAMES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
POOLING_CHOICES = ("auto", *POOLING_TYPES)


def gguf_metadata(path: str) -> dict[str, Any]:
    """The key/value header of the GGUF file ``path``, as llama.cpp reads it (``vocab_only`` skips
    the weights: ~0.2 s for SmolLM2). Raises ``BackendError`` for an unreadable file."""
    import llama_cpp

    try:
        return llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False).metadata
    except Exception as exc:  # llama.cpp reports a bad file as a ValueError/RuntimeError
        raise BackendError(f"llama.cpp could not load {path}: {exc}") from None


def pooling_for(path: str, choice: str, metadata: dict[str, Any] | None = None) -> str:
    """The pooling to open ``path`` with: ``choice``, or for ``auto`` the one the GGUF declares
    (``<arch>.pooling_type``, from ``metadata`` when the header was read already) when it is mean /
    cls / last, and mean when it declares none or nothing. Raises ``BackendError`` for an unreadable
    header, ``InvalidRequestError`` for a declared rank pooling."""
    if choice != "auto":
        return choice
    metadata = metadata if metadata is not None else gguf_metadata(path)
    declared = metadata.get(f"{metadata.get('general.architecture')}.pooling_type")
    name = POOLING_NAMES.get(int(declared)) if declared is not None and str(declared).isdigit() else None
    if name == "rank":
        raise InvalidRequestError(
            f"{path} declares rank pooling: it is a reranker (a classification head), not an embedding "
            "model; set infer_param pooling to mean, cls or last to embed with it anyway",
            param="pooling",
        )
    return name if name in POOLING_TYPES else "mean"


def check_pooling(config: dict[str, Any]) -> dict[str, Any]:
    """Checked deploy options of a GGUF backend with ``embedding`` and ``pooling``: ``pooling`` is one
    of auto, mean, cls, last (lower-cased) and set only on an ``embedding=true`` deployment, checked
    before any model is loaded. Raises ``InvalidRequestError`` naming ``pooling``."""
    pooling = config["pooling"]
    if not isinstance(pooling, str) or pooling.lower() not in POOLING_CHOICES:
        hint = ""
        if isinstance(pooling, str) and pooling.lower() == "none":
            hint = " ('none' gives one vector per token, not per input)"
        elif isinstance(pooling, str) and pooling.lower() == "rank":
            hint = " ('rank' is a reranker's classification head, not an embedding)"
        raise InvalidRequestError(
            f"infer_param pooling is {pooling!r}{hint}; accepted: {', '.join(POOLING_CHOICES)}",
            param="pooling",
            accepted=list(POOLING_CHOICES),
        )
    config["pooling"] = pooling.lower()
    if config["pooling"] != "auto" and not config["embedding"]:
        raise InvalidRequestError(
            f"infer_param pooling={pooling} applies to embedding deployments; add embedding=true",
            param="pooling",
        )
    return config


def _held_suffix(text: str, stops: list[str]) -> int:
    """Length of the longest end of ``text`` that could begin a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


class GGUFEmbeddingOptions(BackendOptions):
    """The embedding options of the GGUF backends (``llama_cpp``, ``llama_server``)."""

    embedding: bool = Field(False, description="serve embeddings instead of chat")
    pooling: str = Field(
        "auto", description="auto, mean, cls or last: how token vectors become one (embedding deployments)"
    )


class LlamaCppOptions(GGUFEmbeddingOptions):
    max_model_len: int | None = Field(
        None, ge=1, description="context length in tokens, as Byzer-LLM's backend.max_model_len; overrides n_ctx"
    )
    n_ctx: int = Field(4096, ge=1, description="context length in tokens")
    n_threads: int = Field(1, ge=1, description="CPU threads for generation and prompt processing")
    n_batch: int = Field(512, ge=1, description="prompt tokens per decode call")
    n_gpu_layers: int = Field(0, ge=-1, description="layers offloaded to a GPU (-1: all)")
    seed: int | None = Field(None, description="sampling seed of the engine (a request's seed wins)")
    cache_prompt: bool = Field(True, description="reuse the KV cache of a shared prompt prefix")
    chat_template: str | None = Field(None, description="a Jinja chat template (default: the GGUF's own)")
    use_mmap: bool = Field(True, description="memory-map the model file")
    verbose: bool = Field(False, description="llama.cpp's own logging on stderr")


class LlamaCppBackend(Backend):
    """A GGUF chat model on llama.cpp, CPU by default.

    Deploy options (``infer_params``, ``backend.`` prefix optional): ``max_model_len`` / ``n_ctx``
    context length in tokens (default 4096), ``n_threads`` (default 1: on a 2-core machine one
    thread per worker serves best), ``n_batch``, ``n_gpu_layers``, ``seed``, ``cache_prompt``
    (reuse the KV cache of a shared prompt prefix, default true; never for a request
    with a ``seed``, which must give the same text on any worker), ``chat_template`` (a Jinja2
    template replacing the GGUF's), ``use_mmap``, ``verbose``, ``embedding`` (serve embeddings
    instead of chat), ``pooling`` (how an ``embedding=true`` deployment turns the last layer's
    token vectors into one vector per input: ``mean``, ``cls`` (the first token's, e.g. [CLS] of a
    BERT), ``last`` (the last token's), or ``auto``, the default: the pooling the GGUF declares in
    its metadata (``<arch>.pooling_type``, written by llama.cpp's converter from the
    sentence-transformers config), else ``mean``; chat models such as SmolLM2 declare none).
    ``meta()["pooling"]`` is the pooling in effect, as llama.cpp reports it.

    Raises ``ModelPathError`` when the file is missing, ``BackendError`` when llama.cpp
    cannot load it, and ``InvalidRequestError`` (``param="pooling"``) for a pooling outside
    auto/mean/cls/last, for one on a chat deployment, and for ``auto`` on a GGUF that declares
    ``rank`` pooling (a reranker's classification head, not an embedding).
    """

    name = "llama_cpp"
    Options = LlamaCppOptions
    request_options = REQUEST_OPTIONS
    thread_safe = False

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        path = resolve_model_path(model_path)
        cfg = self.config
        n_ctx = cfg["max_model_len"] or cfg["n_ctx"]
        pooling = pooling_for(path, cfg["pooling"]) if cfg["embedding"] else None
        try:
            self.llm = llama_cpp.Llama(
                model_path=path,
                n_ctx=int(n_ctx),
                n_threads=int(cfg["n_threads"]),
                n_threads_batch=int(cfg["n_threads"]),
                n_batch=int(cfg["n_batch"]),
                n_gpu_layers=int(cfg["n_gpu_layers"]),
                use_mmap=bool(cfg["use_mmap"]),
                verbose=bool(cfg["verbose"]),
                **({"embedding": True, "pooling_type": POOLING_TYPES[pooling]} if pooling else {}),
                **({"seed": int(cfg["seed"])} if cfg["seed"] is not None else {}),
            )
        except Exception as exc:  # llama.cpp reports a bad file as a ValueError/RuntimeError
            raise BackendError(f"llama.cpp could not load {path}: {exc}") from None
        # the pooling llama.cpp applies, read back from the context rather than assumed
        self.pooling = POOLING_NAMES.get(self.llm.pooling_type()) if pooling else None
        # llama.cpp may round its context up; the Python-side buffers keep the requested size
        self.n_ctx = min(int(n_ctx), self.llm.n_ctx())
        # the most characters one token stands for: a text longer than max_model_len times this
        # cannot fit, which is known without tokenizing it (a 7 MB prompt takes 13 s to tokenize)
        self.max_token_chars = max(len(self._token_text(t)) for t in range(self.llm.n_vocab())) or 1
        self._eog = llama_cpp.llama_vocab_is_eog
        self.path = path
        self._grammars: dict[str, Any] = {}
        template = cfg["chat_template"] or self.llm.metadata.get("tokenizer.chat_template")
        self.formatter = None
        if template:
            self.formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=self._token_text(self.llm.token_eos()),
                bos_token=self._token_text(self.llm.token_bos()),
            )

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """As ``Backend.check_options``, and ``check_pooling``."""
        return check_pooling(super().check_options(options))

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _fits(self, text: str, request: ChatRequest) -> str:
        """``text`` when it may fit; raise ``InvalidRequestError`` when it has more characters than the
        context (or the request's max input length) could hold at ``max_token_chars`` per token."""
        limit = min(self.n_ctx, request.max_input_tokens or self.n_ctx)
        if len(text) > limit * self.max_token_chars:
            raise InvalidRequestError(
                f"the prompt is {len(text)} characters, more than {limit} tokens can hold (a token of this model "
                f"is at most {self.max_token_chars} characters); max_model_len is {self.n_ctx}",
                param="messages",
            )
        return text

    def _prompt_tokens(self, request: ChatRequest) -> list[int]:
        if request.prompt is not None:
            prompt = self._fits(request.prompt, request)
            return self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        if self.formatter is None:
            raise InvalidRequestError(
                f"{self.path} has no chat template; set one with infer_params chat_template=... "
                "or a client template (setup_template)",
                param="messages",
            )
        messages, prefill = text_messages(request, "llama_cpp")
        rendered = self.formatter(messages=messages)
        text = self._fits(rendered.prompt + prefill, request)
        return self.llm.tokenize(text.encode("utf-8"), add_bos=not rendered.added_special, special=True)

    def _grammar(self, response_format: dict[str, Any] | None):
        """A llama.cpp grammar for OpenAI's ``response_format`` (cached per schema)."""
        if not response_format:
            return None
        kind = response_format.get("type")
        if kind == "text":
            return None
        if kind == "json_object":
            key = "json_object"
        elif kind == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise InvalidRequestError(
                    "response_format.json_schema.schema must be a JSON schema object",
                    param="response_format.json_schema.schema",
                )
            key = json.dumps(schema, sort_keys=True)
        else:
            raise InvalidRequestError(
                f"response_format.type {kind!r} is unknown; accepted: text, json_object, json_schema",
                param="response_format.type",
            )
        if key not in self._grammars:
            from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

            try:
                if key == "json_object":
                    grammar = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
                else:
                    grammar = LlamaGrammar.from_string(schema_to_gbnf(schema), verbose=False)
            except Exception as exc:  # the converter rejects schema features it cannot express
                raise InvalidRequestError(
                    f"response_format schema cannot be turned into a grammar: {exc}",
                    param="response_format.json_schema.schema",
                ) from None
            if len(self._grammars) > 64:
                self._grammars.clear()
            self._grammars[key] = grammar
        return self._grammars[key]

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """One L2-normalised vector (``n_embd`` floats) per text, pooled as ``meta()["pooling"]``
        says, from a deployment made with ``embedding=true``, and the number of input tokens."""
        if not self.config["embedding"]:
            raise InvalidRequestError(
                f"{self.path} is deployed for chat; deploy it with infer_params embedding=true for embeddings",
                param="model",
            )
        counts = [len(self.llm.tokenize(t.encode("utf-8"), add_bos=True, special=False)) for t in texts]
        too_long = next((i for i, n in enumerate(counts) if n > self.n_ctx), None)
        if too_long is not None:
            raise InvalidRequestError(
                f"input {too_long} is longer than max_model_len {self.n_ctx} tokens", param=f"input[{too_long}]"
            )
        tokens = sum(counts)
        self.llm.reset()
        return [list(map(float, v)) for v in self.llm.embed(texts, normalize=True)], tokens

    def rerank(self, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        """LLM-as-judge relevance by query likelihood: the chat model is shown the passage and asked
        for a question it answers; the score is the mean log-probability (nats per token, <= 0) of
        the query's tokens as that question (UPR: Sachan et al. 2022, "Improving Passage Retrieval
        with Zero-Shot Question Generation"). No text is generated. A yes/no judge was measured
        first: SmolLM2-135M ranked a relevant passage below "hi"; query likelihood ranked all 7 test
        pairs right. An ``embedding=true`` deployment scores by cosine similarity instead."""
        if self.config["embedding"]:
            return super().rerank(pairs)
        import numpy as np

        llm = self.llm
        n_vocab = llm.n_vocab()
        scores: list[float] = []
        tokens = 0
        for query, passage in pairs:
            prompt, asked = self._judge_tokens(query, passage)
            tokens += len(prompt) + len(asked)
            llm.reset()
            llm.eval(prompt)
            total = 0.0
            for token in asked:
                # the last position's logits (llama-cpp-python keeps no copy unless logits_all)
                logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).astype(np.float64)
                top = logits.max()
                total += logits[token] - top - np.log(np.exp(logits - top).sum())
                llm.eval([token])
            scores.append(float(total / max(len(asked), 1)))
        llm.reset()
        return scores, tokens

    def _judge_tokens(self, query: str, passage: str) -> tuple[list[int], list[int]]:
        asked = self.llm.tokenize(query.encode("utf-8"), add_bos=False, special=False)[:JUDGE_MAX_QUERY_TOKENS]
        budget = self.n_ctx - len(asked) - 8
        while True:
            request = ChatRequest(
                messages=[
                    {"role": "user", "content": f"Passage: {passage}\n\n{JUDGE_QUESTION}"},
                    {"role": "assistant", "content": ""},
                ],
                continue_final_message=True,
            )
            prompt = self._prompt_tokens(request)
            if len(prompt) <= budget or len(passage) < 16:
                return prompt[-budget:], asked
            passage = passage[: int(len(passage) * budget / len(prompt) * 0.9)]

    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        if self.config["embedding"]:
            raise InvalidRequestError(f"{self.path} is deployed for embeddings, not chat", param="model")
        llm = self.llm
        tokens = self._prompt_tokens(request)
        grammar = self._grammar(request.response_format)
        n_ctx = self.n_ctx
        check_input_length(request, len(tokens))
        room = n_ctx - len(tokens)
        if room <= 0:
            raise InvalidRequestError(f"the prompt is {len(tokens)} tokens; max_model_len is {n_ctx}", param="messages")
        max_tokens = min(request.max_tokens or room, room)
        s = {**DEFAULT_SAMPLING, "ignore_eos": False, **request.extra}
        if grammar is not None and "repetition_penalty" not in request.extra:
            # inside a grammar a small model tends to loop in a string until max_length; measured on
            # SmolLM2 (20 seeds, a Chinese story schema): 19/20 JSONs finished at 1.1, 20/20 at 1.15
            s["repetition_penalty"] = GRAMMAR_REPETITION_PENALTY
        ignore_eos = bool(s["ignore_eos"])
        if request.temperature is not None:
            s["temperature"] = request.temperature
        if request.top_p is not None:
            s["top_p"] = request.top_p
        llm.set_seed(request.seed if request.seed is not None else random.randint(0, 2**31 - 1))
        # Reusing a cached prefix changes how the prompt is batched, and so the logits' last
        # bits: a seeded request is evaluated from scratch to be reproducible on any worker.
        if not self.config["cache_prompt"] or request.seed is not None:
            llm.reset()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = request.stop
        held = ""
        generated = 0
        finish = "length"
        for token in llm.generate(
            tokens,
            temp=float(s["temperature"]),
            top_p=float(s["top_p"]),
            top_k=int(s["top_k"]),
            min_p=float(s["min_p"]),
            repeat_penalty=float(s["repetition_penalty"]),
            presence_penalty=float(s["presence_penalty"]),
            frequency_penalty=float(s["frequency_penalty"]),
            reset=True,
            grammar=grammar,
        ):
            if not ignore_eos and self._eog(llm._model.vocab, token):
                finish = "stop"
                break
            generated += 1
            held += decoder.decode(llm.detokenize([token]))
            if stops:
                hit = min((i for i in (held.find(x) for x in stops) if i >= 0), default=-1)
                if hit >= 0:
                    if hit:
                        yield ChatChunk(held[:hit], None, len(tokens), generated)
                    held = ""
                    finish = "stop"
                    break
                keep = _held_suffix(held, stops)
                out, held = (held[:-keep], held[-keep:]) if keep else (held, "")
            else:
                out, held = held, ""
            if out:
                yield ChatChunk(out, None, len(tokens), generated)
            if generated >= max_tokens or cancelled():
                finish = "length" if generated >= max_tokens else "cancelled"
                break
        # bytes of a character cut off by max_tokens are dropped, not shown as U+FFFD
        if held:  # a partial stop string that never completed is ordinary text
            yield ChatChunk(held, None, len(tokens), generated)
        yield ChatChunk("", finish_reason=finish, input_tokens=len(tokens), generated_tokens=generated)

    def meta(self) -> dict[str, Any]:
        md = self.llm.metadata
        arch = md.get("general.architecture")
        return {
            "backend": self.name,
            "model_path": self.path,
            "model_name": md.get("general.name"),
            "max_model_len": self.n_ctx,
            "support_stream": True,
            "support_chat_template": self.formatter is not None,
            # structure by construction: llama.cpp grammars from OpenAI response_format
            "support_response_format": ["json_object", "json_schema"],
            "support_continue_final_message": True,
            "model_type": "embedding" if self.config["embedding"] else "chat",
            "tasks": ["embed", "rerank"] if self.config["embedding"] else ["chat"],
            "embedding_dim": self.llm.n_embd(),
            # mean / cls / last on an embedding deployment, None on a chat one
            "pooling": self.pooling,
            "architectures": [arch] if arch else [],
            "n_threads": int(self.config["n_threads"]),
        }

    def close(self) -> None:
        self.llm.close()


def _property_order(schema: Any, order: dict[str, int]) -> dict[str, int]:
    """Property names in the order the schema declares them (first occurrence wins)."""
    if isinstance(schema, dict):
        for name in schema.get("properties", {}) or {}:
            order.setdefault(name, len(order))
        for value in schema.values():
            _property_order(value, order)
    elif isinstance(schema, list):
        for value in schema:
            _property_order(value, order)
    return order


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """llama.cpp grammar text for a JSON schema, with two fixes over llama-cpp-python's converter:
    properties keep the schema's order (it sorts them by name otherwise), and strings exclude
    raw control characters as JSON requires (its ``char`` rule lets a newline through)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    order = _property_order(schema, {})
    gbnf = json_schema_to_gbnf(json.dumps(schema), prop_order=sorted(order, key=order.get))
    return gbnf.replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |')
