"""The ``cortexalign`` command line: one typer app, one module per group of commands.

Each module registers its commands on :data:`cortexalign.cli._app.app` when imported; ``app``
(imported from here) is the app with every command module of :data:`COMMAND_MODULES` loaded, in
the order ``cortexalign --help`` lists them. Command modules import only typer and rich at module
level (torch and the rest load inside the command that needs them), so ``cortexalign --help``
starts in well under a second. Importing this package itself loads nothing: the console script's
:func:`main` does the imports inside its Ctrl-C guard, so an interrupt during start-up ends with
one line, not a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["app", "main", "COMMAND_MODULES"]

#: Command modules, in the order ``cortexalign --help`` lists their commands.
COMMAND_MODULES = ("run", "config", "catalog", "miou", "extract", "compare", "results", "sae", "spiking",
                   "study", "train_aligned", "fetch", "doctor")


def _load_app() -> Any:
    """The typer app with every command module imported (each registers its commands)."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"cortexalign.cli.{name}")
    return importlib.import_module("cortexalign.cli._app").app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _load_app()
    raise AttributeError(f"module 'cortexalign.cli' has no attribute {name!r}")


def main() -> None:  # the console entry point
    """Entry point of the ``cortexalign`` console script.

    Ctrl-C, during start-up or in a command, prints ``interrupted`` and exits with status 130
    (the shell's code for SIGINT) instead of a Python traceback.
    """
    try:
        from cortexalign.compute import keep_freed_memory  # imports nothing heavy

        keep_freed_memory()  # large temporaries reused, not page-faulted in again (compute)
        _load_app()()
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        sys.exit(130)
