"""``GET /v1/models``: every deployment (and every alias of one) as an OpenAI model."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from ...errors import ByzerLLMError
from ..responses import ModelCard, ModelList
from ..state import ServerDep
from .common import error_responses

router = APIRouter()


@router.get("/v1/models", response_model=ModelList, responses=error_responses(401, 500, 503))
async def models(srv: ServerDep) -> ModelList:
    llm = srv.llm
    names = await asyncio.to_thread(llm.list_deployments)
    cards = []
    for name in names:
        try:
            info = await asyncio.to_thread(llm.deployment_info, name)
        except ByzerLLMError:
            continue  # removed meanwhile
        meta = info.get("meta") or {}
        cards.append(
            ModelCard(
                id=name,
                created=int(info["spec"]["created_at"]),
                kind=meta.get("model_type", "chat"),
                state=info["state"],
            )
        )
    for alias, name in srv.aliases.items():
        cards += [card.model_copy(update={"id": alias}) for card in cards if card.id == name]
    return ModelList(data=cards)
