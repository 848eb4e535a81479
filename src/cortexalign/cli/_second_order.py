"""What ``cortexalign results OUT --discriminability`` prints (imported by the command when used:
it needs torch and the analyses)."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

__all__ = ["show_discriminability", "show_layer_table"]


def show_discriminability(console: Console, out: Path, *, n_bootstrap: int, alpha: float,
                          rules: list[str], target: str | None, device: str) -> None:
    """Compute, store and print the discriminability of every (target, metric entry, rule)."""
    from cortexalign.bench import DiscriminabilitySpec, grid_discriminability

    t0 = time.perf_counter()
    spec = DiscriminabilitySpec(rules=rules, n_bootstrap=n_bootstrap, alpha=alpha)
    results = grid_discriminability(out, spec, device=device)
    for r in results:
        if target is not None and r.target != target:
            continue
        head = f"{r.target} | {r.metric} | layer rule: {r.rule}"
        if r.result is None:
            console.print(f"{head}: skipped ({r.skipped})", markup=False, highlight=False,
                          soft_wrap=True)
            continue
        samples, d = r.result
        console.print(f"[bold]{head}[/]: {d.n_distinguishable} of {len(d.names)} models told "
                      f"apart; {d.fraction_separated:.0%} of pairs separated at FDR "
                      f"{d.alpha:g} ({d.n_bootstrap} resamples of stimuli"
                      f"{' and subjects' if samples.subjects_resampled else ''})", soft_wrap=True)
        table = Table("model", "layer(s)", "score", "rank", f"rank {d.ci_level:.0%} interval",
                      "P(above next)")
        order = sorted(range(len(d.names)), key=lambda j: d.rank_m[j])
        for pos, j in enumerate(order):
            nxt = order[pos + 1] if pos + 1 < len(order) else None
            p_next = "" if nxt is None else (f"{d.p_above_mm[j, nxt]:.2f}"
                                             + (" *" if d.separated_mm[j, nxt] else ""))
            layers = ",".join(dict.fromkeys(samples.layers[d.names[j]]))
            table.add_row(d.names[j], layers, f"{d.scores_m[j]:.3f}", f"{d.rank_m[j]:g}",
                          f"{d.rank_low_m[j]:g}-{d.rank_high_m[j]:g}", p_next)
        console.print(table)
    console.print(f"stored in {out} (table second_order; `cortexalign report {out}` shows it); "
                  f"{time.perf_counter() - t0:.1f} s", markup=False, highlight=False, soft_wrap=True)


def show_layer_table(console: Console, out: Path, *, rule: str, n_folds: int,
                     target: str | None, metric: str | None, device: str) -> None:
    """Compute, write and print the best-layer table under ``rule`` (``bench.grid_best_layers``),
    its title stating the rule."""
    from cortexalign.bench import grid_best_layers

    t0 = time.perf_counter()
    frame = grid_best_layers(out, rule=rule, n_folds=n_folds, target=target, metric=metric,
                             device=device)
    how = (f"cross-validated: chosen on the other {n_folds - 1} of {n_folds} stimulus folds, "
           "scored on the held-out fold, mean over folds" if rule == "cv" else
           "best on the same data it is scored on (optimistic)")
    table = Table("model", "target", "metric", "layer(s)", "score", "note",
                  title=f"Best-layer table, layer rule: {rule} ({how})")
    for r in frame.to_dict("records"):
        table.add_row(r["model"], r["target"], r["metric"], r["layer"] or "-",
                      "-" if r["skipped"] else f"{r['value']:.3f}",
                      f"skipped: {r['skipped']}" if r["skipped"] else "")
    console.print(table)
    console.print(f"wrote best_layers_{rule}.csv beside the results of {out}; "
                  f"{time.perf_counter() - t0:.1f} s", markup=False, highlight=False,
                  soft_wrap=True)
