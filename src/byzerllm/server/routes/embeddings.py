"""``POST /v1/embeddings``: OpenAI's embeddings, from deployments made with ``embedding=true``."""

from __future__ import annotations

import base64
import struct
import time

from fastapi import APIRouter

from ...errors import InvalidRequestError
from ..responses import EmbeddingResponse, EmbeddingResponseData, EmbeddingUsage
from ..schemas import EmbeddingRequest
from ..state import ServerDep
from .common import MODEL_ERRORS, error_responses

ENDPOINT = "/v1/embeddings"

router = APIRouter()


@router.post(ENDPOINT, response_model=EmbeddingResponse, responses=error_responses(*MODEL_ERRORS))
async def embeddings(body: EmbeddingRequest, srv: ServerDep) -> EmbeddingResponse:
    name = srv.deployment(body.model)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequestError(
            "input must be a string or a non-empty list of strings (token arrays are not supported)", param="input"
        )
    start = time.perf_counter()
    out = await srv.timed(srv.llm.async_emb(name, texts))
    dim = len(out[0].output)
    if body.dimensions is not None and body.dimensions != dim:
        raise InvalidRequestError(f"dimensions must be {dim} for {body.model}", param="dimensions")
    tokens = out[0].metadata["input_tokens_count"]
    srv.metrics.done(ENDPOINT, body.model, time.perf_counter() - start, None, {"input_tokens_count": tokens})
    data = [
        EmbeddingResponseData(
            index=i,
            embedding=r.output
            if body.encoding_format == "float"
            else base64.b64encode(struct.pack(f"<{dim}f", *r.output)).decode(),
        )
        for i, r in enumerate(out)
    ]
    return EmbeddingResponse(
        data=data,
        model=body.model,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
