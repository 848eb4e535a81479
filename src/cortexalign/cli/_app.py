"""The ``cortexalign`` typer app, its consoles and the one error helper every command uses.

Command modules (``cortexalign.cli.*``) register on :data:`app` with ``@app.command``. They import
typer and rich only at module level, and everything else inside the command, so that
``cortexalign --help`` starts without torch.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

__all__ = ["app", "console", "err_console", "fail", "parse_kwargs", "FlagCommand", "FlagGroup",
           "FlagTyper", "CLI_SPELLING", "CONFIG_SPELLING"]


def _blank_flag_metavars(params: list[Any]) -> list[Any]:
    """Flags take no value: give them an empty metavar, so help shows ``--quiet`` rather than
    typer's ``--quiet <bool>`` (its rich help prints a type for every option)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


def _paragraphs(text: str | None) -> str | None:
    """A docstring's paragraphs each on one line: typer's rich help keeps a docstring's line
    breaks, so a paragraph wrapped at 100 columns in the source came out broken mid-sentence
    (and the command list showed the first one cut at its first line break). Paragraphs that
    start with ``\\b`` keep their lines."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


class FlagCommand(TyperCommand):
    """A typer command whose flags show no ``<bool>`` metavar in ``--help``, and whose help
    paragraphs are joined into lines (:func:`_paragraphs`)."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any):  # noqa: A002
        super().__init__(*args, help=_paragraphs(help), **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        return _blank_flag_metavars(super().get_params(ctx))


class FlagGroup(TyperGroup):
    """The ``cortexalign`` group: its own ``--help`` shows no ``<bool>`` metavar either."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any):  # noqa: A002
        super().__init__(*args, help=_paragraphs(help), **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        return _blank_flag_metavars(super().get_params(ctx))


class FlagTyper(typer.Typer):
    """``typer.Typer`` whose commands default to :class:`FlagCommand`."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any):
        return super().command(*args, cls=cls or FlagCommand, **kwargs)


app = FlagTyper(
    cls=FlagGroup,
    name="cortexalign",
    help="Measure how vision models line up with the visual brain: RSA, CKA and encoding "
         "scores per layer, with noise ceilings and bootstrap intervals, stored in DuckDB and "
         "summarised in an HTML report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _LiveConsole:
    """A rich ``Console`` that follows ``COLUMNS`` as it is when a command prints.

    rich fixes a console's width from ``COLUMNS`` when the console is built; a module-level
    console built under one value would keep it for the whole process (a long-lived Python
    session, a test process running many commands). This one builds a new ``Console`` whenever
    ``COLUMNS`` has changed since the last one, and otherwise behaves as that console.
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._columns: str | None = None
        self._console: Console | None = None

    def _current(self) -> Console:
        columns = os.environ.get("COLUMNS")
        if self._console is None or columns != self._columns:
            self._console, self._columns = Console(**self._options), columns
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current(), name)

    def __enter__(self) -> Console:
        return self._current().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._current().__exit__(*exc)


console: Console = _LiveConsole()  # type: ignore[assignment]
err_console: Console = _LiveConsole(stderr=True)  # type: ignore[assignment]


#: The Python spellings of the model-loading fixes, as the command line spells them.
CLI_SPELLING = {"weights=PATH": "--weights PATH", "untrained=True": "--untrained",
                "pretrained=True": "(the default weights)"}
#: The same fixes as a config file spells them (the model's entry in ``models``).
CONFIG_SPELLING = {"weights=PATH": "weights: PATH in the model's entry",
                   "untrained=True": "untrained: true"}


def fail(err: Exception, spelling: dict[str, str] | None = None) -> NoReturn:
    """Print ``error: <message>`` on standard error and exit with status 2.

    ``spelling`` rewrites parts of the message (e.g. :data:`CLI_SPELLING`, so a fix reads
    ``--weights PATH`` on the command line rather than the API's ``weights=PATH``).
    """
    message = str(err)
    for api, cli in (spelling or {}).items():
        message = message.replace(api, cli)
    # soft_wrap: one line per message line (a terminal wraps it; a pipe keeps paths whole)
    err_console.print(f"error: {message}", style="red", highlight=False, markup=False,
                      soft_wrap=True)
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
