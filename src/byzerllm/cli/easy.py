"""The ``easy-byzerllm`` command: one line to deploy a well-known SaaS model, undeploy it, chat.

    easy-byzerllm deploy deepseek-chat --token $DEEPSEEK_API_KEY --alias deepseek_chat
    easy-byzerllm chat deepseek_chat "hello"
    easy-byzerllm undeploy deepseek_chat
    easy-byzerllm models

Model names map to a provider preset and model id through ``easy_models.json`` (data, not code);
the preset (``backends/saas_presets.json``) holds the base URL. ``chat`` talks to a deployment of
that name on the Ray cluster when there is one, else to the model itself in this process
(``SimpleByzerLLM``), with ``--token`` or the provider's API-key environment variable.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from importlib.resources import files
from typing import Any

import click

from ..backends.saas_presets import preset_options, presets
from ..errors import ClusterNotFoundError, InvalidRequestError
from ..params import parse_key_values
from .common import MultiValueCommand, _connect, _opt, err, handle_errors


@functools.cache
def model_table() -> dict[str, Any]:
    """``{"models": {name: {"provider", "model"}}, "patterns": [{"contains", "provider"}]}``."""
    return json.loads(files(__package__).joinpath("easy_models.json").read_text(encoding="utf-8"))


def resolve_model(name: str, provider: str | None = None, base_url: str | None = None) -> dict[str, Any]:
    """``{"provider", "model", "base_url", "pretrained_model_type"}`` for a model name; ``provider``
    forces the preset. Raises ``InvalidRequestError`` naming the known models for an unknown name."""
    table = model_table()
    entry = dict(table["models"].get(name, {}))
    if not entry:
        for rule in table["patterns"]:
            if rule["contains"] in name:
                entry = {"provider": rule["provider"], "model": name}
                break
    if provider:
        entry = {"provider": provider, "model": entry.get("model", name)}
    if not entry:
        raise InvalidRequestError(
            f"model {name!r} is not in the table of well-known models; known: {', '.join(table['models'])} "
            "(or give --provider with one of: " + ", ".join(sorted(presets())) + ")",
            param="model",
        )
    options = preset_options(entry["provider"])
    entry["base_url"] = base_url or entry.get("base_url") or options.get("base_url")
    entry["pretrained_model_type"] = f"saas/{entry['provider']}"
    entry["api_key_env"] = options.get("api_key_env")
    return entry


def _infer_params(entry: dict[str, Any], token: str | None, extra: tuple[str, ...]) -> dict[str, Any]:
    params = {"saas.model": entry["model"]}
    if entry["base_url"]:
        params["saas.base_url"] = entry["base_url"]
    if token:
        params["saas.api_key"] = token
    params.update(parse_key_values(extra) if extra else {})
    return params


def _masked(token: str | None) -> str:
    return f"***{token[-4:]}" if token else "none"


@click.group()
@click.version_option(package_name="byzerllm")
def cli() -> None:
    """Deploy well-known SaaS models in one line, and chat with them."""


@cli.command(cls=MultiValueCommand)
@click.argument("model")
@_opt("token", default=None, help="The provider's API key (default: its environment variable).")
@_opt("alias", default=None, help="Deployment name (default: the model name with _ for - . /).")
@_opt("provider", default=None, help="Force a provider preset (saas/<provider>).")
@_opt("base_url", default=None, help="Another endpoint of the provider's API.")
@_opt("num_workers", default=1, type=int, show_default=True)
@_opt(
    "worker_concurrency",
    default=8,
    type=int,
    show_default=True,
    help="Requests one worker sends upstream at once (caps the deployment's in-flight requests).",
)
@_opt("infer_params", multiple=True, help="More saas.* options key=value (saas.deadline=60 ...).")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def deploy(model, token, alias, provider, base_url, num_workers, worker_concurrency, infer_params, ray_address):
    """Deploy MODEL (e.g. deepseek-chat) as a SaaS deployment on the Ray cluster."""
    from ..client import ByzerLLM

    entry = resolve_model(model, provider, base_url)
    alias = alias or re.sub(r"[^0-9A-Za-z_]", "_", model)
    _connect(ray_address, start_local=True)
    llm = ByzerLLM().setup_num_workers(num_workers).setup_worker_concurrency(worker_concurrency)
    llm.deploy(
        model_path="",
        pretrained_model_type=entry["pretrained_model_type"],
        udf_name=alias,
        infer_params=_infer_params(entry, token, infer_params),
    )
    click.echo(
        f"Deployed {alias}: {entry['pretrained_model_type']} model {entry['model']} at {entry['base_url']} "
        f"(key {_masked(token)}; {num_workers} worker(s) x {worker_concurrency} concurrent requests)"
    )


@cli.command()
@click.argument("alias")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def undeploy(alias, ray_address):
    """Remove deployment ALIAS."""
    from ..client import ByzerLLM

    _connect(ray_address)
    ByzerLLM().undeploy(alias)
    click.echo(f"Undeployed {alias}")


@cli.command()
@click.argument("name")
@click.argument("query")
@_opt("token", default=None, help="API key when NAME is a model run in this process.")
@_opt("provider", default=None)
@_opt("base_url", default=None)
@_opt("max_length", default=None, type=int, help="Max tokens to generate.")
@click.option("--local", is_flag=True, help="Run the model in this process; do not look for a Ray deployment.")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def chat(name, query, token, provider, base_url, max_length, local, ray_address):
    """Ask NAME (a deployment, or a well-known model run in this process) one question; the
    answer streams to stdout, counts go to stderr."""
    from ..client import ByzerLLM, SimpleByzerLLM

    llm = None
    if not local:
        try:
            _connect(ray_address)
            ray_llm = ByzerLLM()
            if ray_llm.is_model_exist(name):
                llm = ray_llm
        except ClusterNotFoundError:
            pass
    if llm is None:
        entry = resolve_model(name, provider, base_url)
        llm = SimpleByzerLLM()
        llm.deploy(
            model_path="",
            pretrained_model_type=entry["pretrained_model_type"],
            udf_name=name,
            infer_params=_infer_params(entry, token, ()),
        )
    config = {"max_length": max_length} if max_length else {}
    meta = None
    for piece, meta in llm.stream_chat_oai(
        [{"role": "user", "content": query}], model=name, llm_config=config, delta_mode=True
    ):
        click.echo(piece, nl=False)
        sys.stdout.flush()
    click.echo()
    if meta:
        err.print(
            f"[{meta.input_tokens_count} input tokens, {meta.generated_tokens_count} generated, "
            f"first token {meta.first_token_time or 0:.3f}s, total {meta.time_cost:.3f}s, "
            f"finish_reason {meta.finish_reason}]",
            style="dim",
            soft_wrap=True,
        )


@cli.command()
def models():
    """The well-known model names, their provider, model id and base URL."""
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "provider", "model id", "base URL", "key variable")
    for name in model_table()["models"]:
        e = resolve_model(name)
        table.add_row(name, e["provider"], e["model"], e["base_url"] or "", e["api_key_env"] or "")
    Console().print(table)
    click.echo(
        "Other names with a '/' are SiliconFlow model ids; --provider picks any of: " + ", ".join(sorted(presets()))
    )


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
