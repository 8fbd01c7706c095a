"""``POST /v1/images/generations``: OpenAI's image generation, served by image deployments
(Stable Diffusion on diffusers, DALL-E). Images are PNG; ``response_format="url"`` answers with
``data:`` URLs, since the server keeps no files to link to."""

from __future__ import annotations

import base64
import time

from fastapi import APIRouter

from ...types import ImageRequest
from ..responses import ImageData, ImagesResponse
from ..schemas import ImageGenerationRequest
from ..state import ServerDep
from .common import MODEL_ERRORS, error_responses

ENDPOINT = "/v1/images/generations"

router = APIRouter()


@router.post(ENDPOINT, response_model=ImagesResponse, responses=error_responses(*MODEL_ERRORS))
async def generations(body: ImageGenerationRequest, srv: ServerDep) -> ImagesResponse:
    start = time.perf_counter()
    request = ImageRequest(
        prompt=body.prompt,
        n=body.n,
        size=body.size,
        quality=body.quality,
        style=body.style,
        negative_prompt=body.negative_prompt,
        steps=body.steps,
        guidance_scale=body.guidance_scale,
        seed=body.seed,
    )
    out = await srv.timed(srv.llm.async_run_task("image", request, model=srv.deployment(body.model)))
    srv.metrics.done(ENDPOINT, body.model, time.perf_counter() - start, None, {})
    b64 = [base64.b64encode(img).decode() for img in out.images]
    if body.response_format == "url":
        data = [ImageData(url=f"data:image/png;base64,{b}", revised_prompt=out.revised_prompt) for b in b64]
    else:
        data = [ImageData(b64_json=b, revised_prompt=out.revised_prompt) for b in b64]
    return ImagesResponse(created=int(time.time()), data=data)
