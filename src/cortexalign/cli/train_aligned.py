"""``train-aligned``: train a model on a task with a brain-alignment regulariser.

The command parses and dispatches; the work is ``cortexalign.align.train_aligned``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cortexalign.cli._app import app, console, fail


def _config(path: Path | None, overrides: dict):
    import yaml
    from pydantic import ValidationError

    from cortexalign.align import AlignConfig
    from cortexalign.errors import InputError

    if path is None:
        raise InputError("CONFIG", "a YAML file of AlignConfig fields", "nothing",
                         "`cortexalign train-aligned --show-config > run.yaml` writes one to edit")
    if not path.is_file():
        raise InputError("CONFIG", "a YAML file", repr(str(path)), "check the path")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise InputError("CONFIG", "a YAML mapping of AlignConfig fields", type(raw).__name__,
                         "write key: value lines")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return AlignConfig(**raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise InputError(".".join(map(str, first["loc"])) or "CONFIG", "a valid AlignConfig "
                         "field", repr(first.get("input"))[:80], first["msg"]) from None


def _template() -> str:
    import yaml

    from cortexalign.align import AlignConfig

    lines = ["# cortexalign train-aligned config: every field, with its default", ""]
    for name, field in AlignConfig.model_fields.items():
        lines += [f"# {t.strip()}" for t in (field.description or "").split("\n")]
        value = "runs/aligned" if name == "out" else field.default
        value = str(value) if isinstance(value, Path) else value
        lines += [yaml.safe_dump({name: value}, default_flow_style=True, width=1000).strip()[1:-1],
                  ""]
    return "\n".join(lines)


@app.command("train-aligned")
def train_aligned_cmd(
    config: Annotated[Path | None, typer.Argument(help="YAML file of AlignConfig fields.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (overrides the config).")] = None,
    lam: Annotated[float | None, typer.Option(help="Alignment weight (overrides).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (overrides).")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (overrides).")] = None,
    device: Annotated[str | None, typer.Option(help="'auto', 'cpu' or 'cuda:N'.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    show_config: Annotated[bool, typer.Option("--show-config", help="Print every config field "
                                              "with its default, as YAML to edit, and exit.")]
    = False,
) -> None:
    """Train a timm or snn:* model on a task + lam x alignment to a brain target.

    The target's stimuli are split into train / held-out (split.json) before anything is fitted;
    the alignment loss sees the training stimuli only. Writes safetensors checkpoints (config
    beside), results.duckdb (the curve) and report.md into the run folder; resumes from its last
    checkpoint. `cortexalign train-aligned --show-config > run.yaml` gives a config to start from.
    """
    from cortexalign.errors import CortexAlignError

    if show_config:
        typer.echo(_template())
        return
    try:
        cfg = _config(config, {"out": out, "lam": lam, "seed": seed, "steps": steps,
                               "device": device, "progress": False if quiet else None})
        from cortexalign.align import train_aligned

        result = train_aligned(cfg)
    except CortexAlignError as err:
        fail(err)
    final = result.final
    held = {k: v for k, v in final.items() if k.startswith("heldout/") and k.count("/") == 1}
    console.print(f"trained {result.model_id} for {result.steps} steps in {result.seconds:.0f} s: "
                  f"task accuracy {final.get('accuracy', float('nan')):.3f}", markup=False,
                  highlight=False)
    for key, value in held.items():
        lo, hi = final.get(f"{key}/ci", [None, None])
        ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None else ""
        console.print(f"  held-out alignment {key[8:]}: {value:.3f}{ci}", markup=False,
                      highlight=False)
    console.print(f"  report {result.out / 'report.md'}", markup=False, highlight=False)
