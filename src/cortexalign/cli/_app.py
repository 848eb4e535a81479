"""The ``cortexalign`` typer app, its consoles and the one error helper every command uses.

Command modules (``cortexalign.cli.*``) register on :data:`app` with ``@app.command``. They import
typer and rich only at module level, and everything else inside the command, so that
``cortexalign --help`` starts without torch.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

__all__ = ["app", "console", "err_console", "fail", "parse_kwargs"]

app = typer.Typer(
    name="cortexalign",
    help="Measure how vision models line up with the visual brain: RSA, CKA and encoding "
         "scores per layer, with noise ceilings and bootstrap intervals, stored in DuckDB and "
         "summarised in an HTML report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(err: Exception) -> NoReturn:
    """Print ``error: <message>`` on standard error and exit with status 2."""
    err_console.print(f"error: {err}", style="red", highlight=False, markup=False)
    raise typer.Exit(2)


def parse_kwargs(items: list[str] | None, flag: str = "--kwarg",
                 example: str = "img_size=512") -> dict:
    """``KEY=VALUE`` options (values parsed as YAML) as a dict; a malformed item fails."""
    import yaml

    kwargs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(ValueError(f"{flag}: expected KEY=VALUE, received {item!r}. Fix: e.g. "
                             f"{flag} {example}"))
        kwargs[key] = yaml.safe_load(value)
    return kwargs
