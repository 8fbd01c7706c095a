"""The server's routes, one router per endpoint family (as vLLM's ``entrypoints/openai``):
``admin`` (``/health``, ``/metrics``), ``models``, ``chat``, ``completions``, ``embeddings``,
``rerank``, ``audio`` (speech, transcriptions), ``images``. Each route declares its response model
and its error statuses, so ``/openapi.json`` lists them; ``generation`` holds what chat and
completions share, ``common`` the declarations."""

from __future__ import annotations

from fastapi import APIRouter

from . import admin, audio, chat, completions, embeddings, images, models, rerank

ROUTERS: tuple[APIRouter, ...] = (
    admin.router,
    models.router,
    chat.router,
    completions.router,
    embeddings.router,
    rerank.router,
    audio.router,
    images.router,
)
