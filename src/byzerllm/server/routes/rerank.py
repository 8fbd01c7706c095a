"""``POST /v1/rerank``: documents ordered by relevance to a query, in Jina's shape, scored by the
deployment's own reranker (a cross-encoder, an LLM judge, or embedding similarity)."""

from __future__ import annotations

import time

from fastapi import APIRouter

from ..responses import RerankResponse, RerankResult, RerankUsage
from ..schemas import RerankDocument, RerankRequest
from ..state import ServerDep
from .common import MODEL_ERRORS, error_responses

ENDPOINT = "/v1/rerank"

router = APIRouter()


@router.post(ENDPOINT, response_model=RerankResponse, responses=error_responses(*MODEL_ERRORS))
async def rerank(body: RerankRequest, srv: ServerDep) -> RerankResponse:
    name = srv.deployment(body.model)
    docs = [d if isinstance(d, str) else d.text for d in body.documents]
    start = time.perf_counter()
    out = (await srv.timed(srv.llm.async_emb_rerank(name, [[body.query, d] for d in docs])))[0]
    score_of = {doc: score for (_, doc), score in out.output}  # equal documents have equal scores
    scores = [score_of[d] for d in docs]
    order = sorted(range(len(docs)), key=lambda i: scores[i], reverse=True)[: body.top_n or len(docs)]
    tokens = out.metadata["input_tokens_count"]
    srv.metrics.done(ENDPOINT, body.model, time.perf_counter() - start, None, {"input_tokens_count": tokens})
    results = [
        RerankResult(
            index=i,
            relevance_score=scores[i],
            document=RerankDocument(text=docs[i]) if body.return_documents else None,
        )
        for i in order
    ]
    return RerankResponse(model=body.model, results=results, usage=RerankUsage(total_tokens=tokens))
