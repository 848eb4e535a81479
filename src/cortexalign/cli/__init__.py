"""The ``cortexalign`` command line: one typer app, one module per group of commands.

Each module registers its commands on :data:`cortexalign.cli._app.app` when imported; this
package imports them in the order ``cortexalign --help`` lists them. Command modules import only
typer and rich at module level (torch and the rest load inside the command that needs them), so
``cortexalign --help`` starts in well under a second.
"""

from __future__ import annotations

import importlib

from cortexalign.cli._app import app

__all__ = ["app", "main"]

#: Command modules, in the order ``cortexalign --help`` lists their commands.
COMMAND_MODULES = ("run", "catalog", "extract", "compare", "results", "sae", "spiking", "study",
                   "train_aligned", "fetch")
for _name in COMMAND_MODULES:
    importlib.import_module(f"cortexalign.cli.{_name}")


def main() -> None:  # pragma: no cover - console entry point
    """Entry point of the ``cortexalign`` console script."""
    app()
