"""RSA of every EfficientNet-Lite0 layer against human IT, with noise ceiling and bootstrap CIs.

The 92 object images of Kriegeskorte et al. (2008) and the human IT RDMs (4 subjects x 2
sessions) ship with cortexalign, and so do EfficientNet-Lite0's ImageNet weights: this runs
offline. Each layer's features (mean-pooled) give a correlation-distance RDM, compared with each
subject's RDM by Spearman correlation; the leave-one-subject-out noise ceiling says how high a
perfect model could score, and bootstrap resamples of the stimuli give a 95% interval (500 by
default to stay under 30 s on 2 CPU cores; `--n-bootstrap 1000` gives the README's intervals).

Run:  python examples/01_rsa_layers_vs_it.py [--out DIR] [--n-bootstrap 500]
Writes DIR/rsa_layers.png (layer-wise curve with the ceiling band) and DIR/rsa_layers.csv.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from matplotlib.figure import Figure

import cortexalign as ca

# every block, the 1280-channel head and the logits (the quickstart's layer list)
LAYERS = [f"blocks.{i}" for i in range(7)] + ["bn2", "logits"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem)
    parser.add_argument("--n-bootstrap", type=int, default=500)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    stimuli = ca.load_stimuli("kriegeskorte92")
    model = ca.load_model("efficientnet_lite0", device="cpu")  # ImageNet weights, offline
    human_it = ca.load_neural("kriegeskorte92.human_IT")        # RDMSet: 8 subject-session RDMs
    feats = ca.extract_features(model, stimuli, LAYERS, pooling="mean", progress=False)

    rows = []
    for layer in LAYERS:
        s = ca.score("rsa", feats[layer].values, human_it, n_bootstrap=args.n_bootstrap, seed=0)
        rows.append({"layer": layer, "rho": s.value, "ci_low": s.ci_low, "ci_high": s.ci_high,
                     "ceiling_low": s.ceiling_low, "ceiling_high": s.ceiling_high})
        print(f"{layer:9s} rho={s.value:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]")
    with open(args.out / "rsa_layers.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    best = max(rows, key=lambda r: r["rho"])
    print(f"noise ceiling [{best['ceiling_low']:.3f}, {best['ceiling_high']:.3f}]; best layer "
          f"{best['layer']} rho={best['rho']:.3f} ({best['rho'] / best['ceiling_low']:.0%} of the "
          "lower bound)")

    fig = Figure(figsize=(6.0, 3.5), layout="constrained")
    ax = fig.subplots()
    x = range(len(rows))
    ax.axhspan(best["ceiling_low"], best["ceiling_high"], color="0.85", label="noise ceiling")
    yerr = [[r["rho"] - r["ci_low"] for r in rows], [r["ci_high"] - r["rho"] for r in rows]]
    ax.errorbar(x, [r["rho"] for r in rows], yerr=yerr, marker="o",
                label="EfficientNet-Lite0 (95% bootstrap CI)")
    ax.set_xticks(list(x), LAYERS, rotation=45, ha="right")
    ax.set_ylabel("Spearman RSA with human IT")
    ax.legend(loc="upper left", fontsize=8)
    fig.savefig(args.out / "rsa_layers.png", dpi=120)
    print(f"wrote {args.out / 'rsa_layers.png'} and {args.out / 'rsa_layers.csv'}")


if __name__ == "__main__":
    main()
