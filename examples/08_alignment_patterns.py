"""Alignment patterns across regions, and how well a benchmark separates models.

Five simulated regions, 5 subjects each, respond to the 92 bundled images; region k's signal is
a chain mix centred on the features of EfficientNet-Lite0's ``blocks.(k+1)`` (6 principal
components each), so neighbouring regions share most and each region has its own profile of
alignment to the others. ``alignment_patterns`` puts each layer of the trained and the untrained
network in each region's place (the best layer per region) and compares its profile with the
region's (Höfling et al. 2026). ``benchmark_discriminability`` then asks how well human IT
(4 subjects) separates three models, with the best layer chosen on the same data and with the
cross-validated choice.

Run:  python examples/08_alignment_patterns.py [--out DIR]
Writes DIR/regions.npz (the simulated responses: configs/alignment_patterns.yaml reads it),
DIR/patterns.csv, DIR/patterns.png (the brain's matrix beside each model's profiles) and
DIR/discriminability.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import cortexalign as ca
from cortexalign.analyses import (
    alignment_patterns,
    benchmark_discriminability,
    save_regions,
    simulate_regions,
)

LAYERS = [f"blocks.{k}" for k in range(7)]
REGIONS = ["area1", "area2", "area3", "area4", "area5"]


def pcs(x_sd: np.ndarray, k: int = 6) -> np.ndarray:
    x = x_sd - x_sd.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :k] * s[:k]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    stimuli = ca.load_stimuli("kriegeskorte92")
    feats = {}
    for label, untrained in (("trained", False), ("untrained", True)):
        model = ca.load_model("efficientnet_lite0", untrained=untrained, device="cpu")
        out = ca.extract_features(model, stimuli, LAYERS, progress=False)
        feats[label] = {k: v.values.astype(np.float64) for k, v in out.items()}
    gabor = ca.load_model("gabor_v1", device="cpu")
    feats["gabor"] = {k: v.values.astype(np.float64) for k, v in ca.extract_features(
        gabor, stimuli, ["simple", "complex"], pooling="grid4", progress=False).items()}

    factors = np.stack([pcs(feats["trained"][f"blocks.{k + 1}"]) for k in range(5)], axis=1)
    regions = simulate_regions(n_stimuli=len(stimuli), n_regions=5, n_subjects=5,
                               n_neuroids=40, noise=1.0, seed=0, region_names=REGIONS,
                               stimulus_ids=stimuli.ids, factors=factors)
    save_regions(regions, args.out / "regions.npz")

    rows, results = [], {}
    for label in ("trained", "untrained"):
        res = alignment_patterns(feats[label], regions, region_by="area", n_permutations=199,
                                 n_bootstrap=100, seed=0)
        results[label] = res
        for s in res.scores:
            rows.append({"model": label, "region": s.region, "layer": s.layer,
                         "similarity": s.value, "ci_low": s.ci_low, "ci_high": s.ci_high,
                         "p_value": s.p_value, "pointwise": s.pointwise,
                         "ceiling_low": s.ceiling_low})
            print(f"{label:9s} {s.region} <- {s.layer}: pattern similarity {s.value:.2f} "
                  f"[{s.ci_low:.2f}, {s.ci_high:.2f}], p = {s.p_value:.3f}, ceiling "
                  f"{s.ceiling_low:.2f}")
    pd.DataFrame(rows).to_csv(args.out / "patterns.csv", index=False)
    trained = {s.region: s for s in results["trained"].scores}
    untrained = {s.region: s for s in results["untrained"].scores}
    print(f"regions whose pattern the trained network's best layer matches (p <= 0.05): "
          f"{sum(s.p_value <= 0.05 for s in trained.values())} of {len(trained)}; untrained: "
          f"{sum(s.p_value <= 0.05 for s in untrained.values())}")
    print("mean pattern similarity, trained vs untrained: "
          f"{np.mean([s.value for s in trained.values()]):.2f} vs "
          f"{np.mean([s.value for s in untrained.values()]):.2f}")

    brain = results["trained"].brain
    fig = Figure(figsize=(10.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [("brain (between subjects)", brain.matrix_rr, REGIONS)]
    for label in ("trained", "untrained"):
        sc = results[label].scores
        panels.append((f"{label}: layer in region's place", np.stack([s.profile_r for s in sc]),
                       [f"{s.region}<-{s.layer}" for s in sc]))
    vmax = max(float(np.nanmax(p[1])) for p in panels)
    for ax, (title, mat, labels) in zip(axes, panels, strict=True):
        im = ax.imshow(mat, vmin=min(0.0, float(np.nanmin(mat))), vmax=vmax, cmap="Blues")
        ax.set_xticks(range(len(REGIONS)), REGIONS, rotation=45, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label="RDM comparison (Spearman)")
    fig.savefig(args.out / "patterns.png", dpi=120)

    it = ca.load_neural("kriegeskorte92.human_IT")
    disc = benchmark_discriminability({"trained": feats["trained"], "untrained":
                                       feats["untrained"], "gabor": feats["gabor"]}, it,
                                      n_bootstrap=300, n_folds=4, seed=0)
    drows = []
    for rule, (samples, d) in disc.items():
        print(f"human IT, layer rule {rule}: {d.n_distinguishable} of {len(d.names)} models "
              f"told apart, {d.fraction_separated:.0%} of pairs separated; scores "
              + ", ".join(f"{n} {v:.3f}" for n, v in zip(d.names, d.scores_m, strict=True)))
        for j, name in enumerate(d.names):
            drows.append({"rule": rule, "model": name, "score": d.scores_m[j],
                          "rank": d.rank_m[j], "rank_low": d.rank_low_m[j],
                          "rank_high": d.rank_high_m[j],
                          "layers": ",".join(samples.layers[name])})
    pd.DataFrame(drows).to_csv(args.out / "discriminability.csv", index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
