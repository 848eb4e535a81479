"""``cortexalign sae-brainmap CONFIG --out DIR``: registered on the main app.

It parses and dispatches; the work is ``cortexalign.sae.runner.run_brainmap``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cortexalign.cli._app import app, console, fail

__all__ = ["sae_brainmap"]


@app.command("sae-brainmap")
def sae_brainmap(
    config: Annotated[Path, typer.Argument(help="SAE-BrainMap YAML (see configs/sae_brainmap.yaml)"
                                                ": model, layers, sae, neural, stimuli.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Results directory: results.duckdb, "
                                                          "saes/, cache/, tables, maps, report.")],
    device: Annotated[str | None, typer.Option(help="cpu, cuda, auto (default: the config's).")]
    = None,
    force: Annotated[bool, typer.Option(help="Rerun even if the results store holds this "
                                             "analysis.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """SAE-BrainMap: one SAE per layer, units matched to voxels, ROI and hierarchy maps."""
    from cortexalign.errors import CortexAlignError
    from cortexalign.results import RESULTS_FILE
    from cortexalign.sae.runner import run_brainmap

    try:
        run = run_brainmap(config, out, device=device, force=force, progress=not quiet)
    except CortexAlignError as err:
        fail(err)
    if run.skipped:
        console.print(f"Already in {out / RESULTS_FILE} (job {run.job_key}); pass --force to "
                      "rerun.", markup=False)
    else:
        console.print(f"Done in {run.seconds:.1f} s.")
        for name, path in run.files.items():
            console.print(f"  {name:18s} {path}", markup=False)
    import pandas as pd

    best = run.scores[run.scores["metric"] == "sae_best_r"] if len(run.scores) else run.scores
    if len(best):
        table = Table(title="Best unit-voxel similarity per ROI (best layer)")
        for col in ("target", "layer", "best r", "mean best r (ceiling)"):
            table.add_column(col)
        mean = run.scores[run.scores["metric"] == "sae_mean_best_r"].set_index(["target", "layer"])
        for _, r in best.loc[best.groupby("target", sort=False)["value"].idxmax()].iterrows():
            m = mean.loc[(r.target, r.layer)]
            ceil = "" if pd.isna(m.ceiling_low) else f" ({float(m.ceiling_low):.3f})"
            table.add_row(str(r.target), str(r.layer), f"{r.value:.3f}", f"{m.value:.3f}{ceil}")
        console.print(table)
