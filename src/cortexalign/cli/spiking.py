"""``train-snn`` and ``eval-snn``: registered on the main app.

The commands parse and dispatch; the work is ``train_snn`` and ``evaluate_snn``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cortexalign.cli._app import app, console, fail
from cortexalign.errors import CortexAlignError, InputError


def _load_config(path: Path):
    import yaml
    from pydantic import ValidationError

    from cortexalign.spiking.train import TrainConfig

    if not path.is_file():
        raise InputError("CONFIG", "a YAML file", repr(str(path)), "check the path")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise InputError("CONFIG", "a YAML mapping of TrainConfig fields", type(raw).__name__,
                         "write key: value lines")
    try:
        return TrainConfig(**raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise InputError(".".join(map(str, first["loc"])) or "CONFIG", "a valid TrainConfig field",
                         repr(first.get("input"))[:80], first["msg"]) from None


def config_template() -> str:
    """Every ``TrainConfig`` field as commented YAML: its meaning, then ``name: default``
    (``data`` and ``checkpoint_dir``, which have none, as placeholders to fill in)."""
    import yaml

    from cortexalign.spiking.train import TrainConfig

    placeholders = {"data": "cifar10_subset.npz", "checkpoint_dir": "runs/hst_tiny"}
    lines = ["# cortexalign train-snn config: every field, with its default", ""]
    for name, field in TrainConfig.model_fields.items():
        for text in (field.description or "").split("\n"):
            lines.append(f"# {text.strip()}")
        value = placeholders.get(name, field.default)
        lines.append(yaml.safe_dump({name: value}, default_flow_style=True, width=1000).strip()[1:-1])
        lines.append("")
    return "\n".join(lines)


@app.command("train-snn")
def train_snn_cmd(
    config: Path = typer.Argument(None, help="YAML file of TrainConfig fields (see --show-config)"),
    show_config: bool = typer.Option(False, "--show-config",
                                     help="Print every config field with its default and meaning, "
                                          "as YAML to edit, and exit."),
):
    """Train a spiking transformer from a YAML config.

    Resumes from the last complete checkpoint in checkpoint_dir; writes safetensors
    checkpoints and metrics.jsonl there. `cortexalign train-snn --show-config > snn.yaml`
    gives a complete config to start from.
    """
    from cortexalign.spiking.train import train_snn

    if show_config:
        typer.echo(config_template())
        return
    try:
        if config is None:
            raise InputError("CONFIG", "a YAML file of TrainConfig fields", "nothing",
                             "pass a config path; `cortexalign train-snn --show-config > snn.yaml` "
                             "writes one to edit")
        result = train_snn(_load_config(config))
    except CortexAlignError as err:
        fail(err)
    for row in result.epochs:
        console.print(row)
    console.print(f"steps: {result.steps}  last checkpoint: {result.last_checkpoint}  ({result.stop_reason})")
    if result.stopped_at_step is not None:
        raise typer.Exit(1)


@app.command("eval-snn")
def eval_snn_cmd(checkpoint: Path = typer.Argument(..., help="ckpt_*.safetensors written by train-snn"),
                 data: Path = typer.Option(..., "--data", help="npz file or image folder"),
                 batch_size: int = typer.Option(256, help="images per batch"),
                 device: str = typer.Option("auto", help="auto, cpu or cuda")):
    """Test accuracy of a trained checkpoint."""
    from cortexalign.spiking.train import evaluate_snn

    try:
        acc = evaluate_snn(checkpoint, data, batch_size=batch_size, device=device)
    except CortexAlignError as err:
        fail(err)
    console.print(f"accuracy: {acc:.4f}")
