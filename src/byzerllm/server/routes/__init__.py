"""The server's routes, one router per endpoint family (as vLLM's ``entrypoints/openai``):
``admin`` (``/health``, ``/metrics``), ``models``, ``chat``, ``completions``, ``embeddings``,
``rerank``, ``audio`` (speech, transcriptions), ``images``; for the web console ``deployments``
(``/v1/deployments...``, ``/v1/backends``), ``jobs`` (``/v1/jobs...``), ``documents``
(``/v1/storage/...``, ``/v1/rag/...``) and ``console`` (the page, ``/console``). Each route
declares its response model and its error statuses, so ``/openapi.json`` lists them; ``generation``
holds what chat and completions share, ``common`` the declarations. A new family is one module
with a ``router``, added to ``ROUTERS``."""

from __future__ import annotations

from fastapi import APIRouter

from . import admin, audio, chat, completions, console, deployments, documents, embeddings, images, jobs, models, rerank

ROUTERS: tuple[APIRouter, ...] = (
    admin.router,
    models.router,
    chat.router,
    completions.router,
    embeddings.router,
    rerank.router,
    audio.router,
    images.router,
    # the web console's API and page
    deployments.router,
    jobs.router,
    documents.router,
    console.router,
)
