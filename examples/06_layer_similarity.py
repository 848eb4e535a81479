"""Every layer against every layer: linear CKA and RSA heatmaps of a trained and an untrained net.

Kornblith et al. (2019)'s layer-by-layer heatmap, with ``layer_similarity``: all layer pairs of
two networks at once, on the 92 bundled images. Network A is EfficientNet-Lite0 with its bundled
ImageNet weights, network B the same architecture untrained (seeded initialisation): both run
offline. Features are mean-pooled over space. Two checks hold by construction: a network against
itself has a unit diagonal, and linear CKA is invariant to orthogonal transforms, so A against a
random rotation of each of its own layers gives exactly the A-vs-A heatmap (RSA with correlation
distance is not rotation invariant; CKA is). The heatmaps then show what training adds: A's
blocks group into an early (blocks.1-4) and a late (blocks.5-bn2) stage, and its untrained twin
resembles it most in the first block and little anywhere else.

Run:  python examples/06_layer_similarity.py [--out DIR]
Writes DIR/cka_linear.png and DIR/rsa.png (panels: A vs A, A vs untrained A) and
DIR/layer_similarity.csv (metric, pair, layer_a, layer_b, value).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import cortexalign as ca
from cortexalign.metrics import plot_layer_similarity

LAYERS = [f"blocks.{i}" for i in range(7)] + ["bn2"]
TOL = 1e-10  # "exactly", up to float64 rounding


def rotated(feats: dict, rng: np.random.Generator) -> dict:
    """{layer: (s, d) features @ Q} with Q a random (d, d) orthogonal matrix per layer."""
    out = {}
    for layer, f in feats.items():
        q_dd, _ = np.linalg.qr(rng.standard_normal((f.values.shape[1],) * 2))
        out[layer] = f.values.astype(np.float64) @ q_dd
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    stimuli = ca.load_stimuli("kriegeskorte92")
    models = {"trained": ca.load_model("efficientnet_lite0", device="cpu"),  # ImageNet weights
              "untrained": ca.load_model("efficientnet_lite0", device="cpu", untrained=True)}
    feats = {k: ca.extract_features(m, stimuli, LAYERS, pooling="mean", progress=False)
             for k, m in models.items()}

    sims, rows = {}, []
    for metric in ("cka_linear", "rsa"):
        for pair, other in (("A vs A", None), ("A vs untrained A", feats["untrained"])):
            da = ca.layer_similarity(feats["trained"], other, metric, device="cpu")
            da.attrs.update(model_a=models["trained"].model_id,
                            model_b=models["untrained" if other is not None else "trained"]
                            .model_id)
            sims[metric, pair] = da
            rows += [{"metric": metric, "pair": pair, "layer_a": a, "layer_b": b,
                      "value": float(da.sel(layer_a=a, layer_b=b))} for a in LAYERS for b in LAYERS]
    with open(args.out / "layer_similarity.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    # the checks that hold by construction
    for metric in ("cka_linear", "rsa"):
        err = float(np.abs(np.diag(sims[metric, "A vs A"].values) - 1).max())
        print(f"{metric}, A vs A: diagonal is 1: {err < TOL} (max |diag - 1| = {err:.1e})")
    spun_feats = rotated(feats["trained"], np.random.default_rng(0))
    spun = ca.layer_similarity(feats["trained"], spun_feats, "cka_linear", device="cpu")
    err = float(np.abs(spun.values - sims["cka_linear", "A vs A"].values).max())
    print(f"cka_linear, A vs its layers randomly rotated: equals A vs A: {err < TOL} "
          f"(max |difference| = {err:.1e})")

    # what the heatmaps show
    self_cka = sims["cka_linear", "A vs A"].values
    for i, layer in enumerate(LAYERS):
        j = max((j for j in range(len(LAYERS)) if j != i), key=lambda j: self_cka[i, j])
        print(f"{layer:9s} closest other layer of A: {LAYERS[j]:9s} (CKA {self_cka[i, j]:.2f}); "
              f"vs the same layer untrained: CKA {sims['cka_linear', 'A vs untrained A'][i, i]:.2f}"
              f", RSA {sims['rsa', 'A vs untrained A'][i, i]:.2f}")

    for metric in ("cka_linear", "rsa"):
        fig = Figure(figsize=(10.0, 4.2), layout="constrained")
        for ax, pair in zip(fig.subplots(1, 2), ("A vs A", "A vs untrained A"), strict=True):
            plot_layer_similarity(sims[metric, pair], ax=ax)
            ax.set_title(f"{metric}: {pair}", fontsize=9)
        fig.savefig(args.out / f"{metric}.png", dpi=110)
    print(f"wrote cka_linear.png, rsa.png and layer_similarity.csv to {args.out}")


if __name__ == "__main__":
    main()
