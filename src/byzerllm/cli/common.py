"""Helpers every ``byzerllm`` / ``easy-byzerllm`` subcommand uses: options with both spellings,
``--infer_params`` with several values, one-line errors, the cluster connection."""

from __future__ import annotations

import functools
import sys

import click
from rich.console import Console

from ..errors import ByzerLLMError

err = Console(stderr=True, highlight=False)


def _fail(message: str) -> None:
    err.print(f"[bold red]Error:[/] {message}", markup=True, soft_wrap=True)
    sys.exit(1)


def handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ByzerLLMError as exc:
            _fail(str(exc))

    return wrapper


class MultiValueCommand(click.Command):
    """Lets ``--infer_params a=1 b=2`` take several values, as argparse ``nargs='+'`` did."""

    multi = ("--infer_params", "--infer-params")

    def parse_args(self, ctx, args):
        out, current = [], None
        for arg in args:
            if arg in self.multi:
                current = arg
                continue
            if current and not arg.startswith("--"):
                out += [current, arg]
                continue
            current = None
            out.append(arg)
        return super().parse_args(ctx, out)


def _connect(address: str, start_local: bool = False) -> None:
    from ..runtime.cluster import connect_cluster

    if connect_cluster(address, start_local=start_local):
        err.print(
            "No Ray cluster was running: started a local Ray head on this machine "
            "(stop it with `byzerllm cluster stop`).",
            soft_wrap=True,
        )


def _opt(name: str, **kw):
    dashed = name.replace("_", "-")
    names = [f"--{name}"] + ([f"--{dashed}"] if dashed != name else [])
    return click.option(*names, name, **kw)
