"""How much of each neuroid's variance is unique to a layer, unique to pixels, or shared?

Responses of 40 simulated neuroids to the 92 bundled images are planted as a linear map of an
EfficientNet-Lite0 layer (``blocks.5``) plus a linear map of 8 x 8 colour thumbnails (a pixel
baseline) plus noise. ``variance_partitioning`` fits a cross-validated ridge model to each union
of the two feature sets and splits the held-out R^2 into unique and shared parts (Lescroart et al.
2015); ``banded_ridge`` fits one model with a separate penalty per feature set and splits its R^2
between them (Nunez-Elizalde et al. 2019). Both should credit both sets.

Run:  python examples/04_variance_partitioning.py [--out DIR]
Writes DIR/variance_partitioning.png (bars: Venn components and banded-ridge split) and
DIR/components.csv (one row per neuroid and component).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

import cortexalign as ca


def thumbnails(stimuli, size: int = 8) -> np.ndarray:
    """(s, size * size * 3) pixel baseline: each image shrunk to size x size, values in [0, 1]."""
    return np.stack([np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR),
                                dtype=np.float64).ravel() / 255 for img in stimuli.images()])


def planted(x_sd: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(s, n) random linear map of z-scored ``x_sd``, scaled to unit SD overall."""
    z_sd = (x_sd - x_sd.mean(0)) / (x_sd.std(0) + 1e-12)
    y_sn = z_sd @ rng.standard_normal((x_sd.shape[1], n))
    return y_sn / y_sn.std()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    stimuli = ca.load_stimuli("kriegeskorte92")
    model = ca.load_model("efficientnet_lite0", device="cpu")
    sets = {"layer": ca.extract_features(model, stimuli, ["blocks.5"], progress=False)["blocks.5"]
            .values.astype(np.float64), "pixels": thumbnails(stimuli)}
    rng = np.random.default_rng(0)
    y_sn = planted(sets["layer"], 40, rng) + planted(sets["pixels"], 40, rng)
    responses = ca.make_responses(y_sn + rng.standard_normal(y_sn.shape), stimuli.ids)

    vp = ca.variance_partitioning(sets, responses, seed=0, device="cpu")
    br = ca.banded_ridge(sets, responses, seed=0, device="cpu")
    for key, value in vp.median_r2.items():
        print(f"R^2({key}) median {value:.3f}")
    for key, value in vp.median_components.items():
        print(f"{key:22s} median {value:.3f}")
    print(f"banded ridge: median r {br.median_r:.3f}, R^2 split "
          + ", ".join(f"{k} {v:.3f}" for k, v in br.median_r2_split.items()))
    vp.to_frame().to_csv(args.out / "components.csv", index=False)

    fig = Figure(figsize=(7.0, 3.0), layout="constrained")
    ax_vp, ax_br = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    for ax, table, title in ((ax_vp, vp.median_components, "variance partitioning"),
                             (ax_br, br.median_r2_split, "banded ridge: R$^2$ split")):
        ax.bar(range(len(table)), list(table.values()), color="0.4")
        ax.set_xticks(range(len(table)), list(table), rotation=30, ha="right")
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.set_title(title, fontsize=9)
    ax_vp.set_ylabel("median held-out R$^2$")
    fig.savefig(args.out / "variance_partitioning.png", dpi=120)
    print(f"wrote {args.out / 'variance_partitioning.png'} and {args.out / 'components.csv'}")


if __name__ == "__main__":
    main()
