"""``cortexalign config template | check | keys``: the experiment config's keys, a commented
template with all of them, and a check of a file without running it (the work is
``bench._config_docs`` and ``bench._validate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cortexalign.cli._app import CONFIG_SPELLING, FlagGroup, FlagTyper, app, console, fail
from cortexalign.cli._table import FORMATS, Column, render

config_app = FlagTyper(
    cls=FlagGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="The experiment config: every key (keys), a template with all of them (template), and "
         "a check of a file that runs nothing (check).")
app.add_typer(config_app, name="config")


@config_app.command()
def template() -> None:
    """Print a complete config in YAML with every key, each under a comment.

    The comment gives the key's type, default and meaning. The config runs as it stands
    (EfficientNet-Lite0 vs human IT by RSA): cortexalign config template > my.yaml, edit it,
    then cortexalign run my.yaml --out my-run.
    """
    from cortexalign.bench import config_template

    typer.echo(config_template(), nl=False)  # verbatim: rich would wrap long lines


@config_app.command()
def keys(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv, json or "
                                     "markdown.")] = "table",
) -> None:
    """List every config key with its type, default and description.

    Read from the config's own schema. 'models[].layers' is a key of each item of 'models';
    '<label>' is a name of your choosing.
    """
    from cortexalign.bench import config_keys
    from cortexalign.errors import InputError

    if fmt not in FORMATS:
        fail(InputError("--format", " | ".join(FORMATS), repr(fmt), "e.g. --format markdown"))
    columns = (Column("path", "key", identifier=True), Column("type", prose=True), Column("default"),
               Column("description", prose=True))
    render(console, columns, [vars(k) for k in config_keys()], fmt)


@config_app.command()
def check(
    file: Annotated[Path, typer.Argument(help="An experiment YAML file.")],
) -> None:
    """Check a config file without running it; every problem at once, exit status 2 if any.

    Checks its keys, then everything it names: models, layers, pooling, weights files, metrics
    and their options, stimuli, neural targets and their stimulus ids, folds, partitions.
    Writes nothing; exit status 0 when valid.
    """
    from cortexalign.bench import load_config, validate_request
    from cortexalign.errors import CortexAlignError

    try:
        cfg = load_config(file, report=lambda line: console.print(line, markup=False,
                                                                  highlight=False))
        stimuli, targets = validate_request(cfg, str(file))
    except CortexAlignError as err:
        fail(err, CONFIG_SPELLING)
    n_targets = sum(len(groups) for groups in targets.values())
    console.print(f"{file}: valid ({len(cfg.models)} models, {len(stimuli)} stimuli, "
                  f"{n_targets} neural targets, {len(cfg.metrics)} metrics); nothing was run.",
                  markup=False, highlight=False)
