"""Extract two layers for a folder of your own images, save them for MATLAB/NumPy, read them back.

Eight of the bundled images are first written as PNGs to a temporary folder, standing in for a
folder of your own stimuli (ids are the file names). ``extract_features`` runs EfficientNet-Lite0
once per batch for both layers; ``save_features`` writes them atomically to ``.npz`` and ``.mat``
(with the model id, layer order, pooling and cache keys as metadata); ``load_features`` reads
them back without unpickling anything. The RDM of the saved features equals the RDM computed
directly from the extracted ones. The same is one shell command:
``cortexalign extract efficientnet_lite0 FOLDER -l blocks.2 -l blocks.5 --out feats.mat``.

Run:  python examples/05_extract_and_save.py [--out DIR]
Writes DIR/features.npz, DIR/features.mat and DIR/rdms.png (direct vs reloaded RDM).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from scipy.io import loadmat

import cortexalign as ca

LAYERS = ["blocks.2", "blocks.5"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    bundled = ca.load_stimuli("kriegeskorte92")
    model = ca.load_model("efficientnet_lite0", device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        for i in range(0, 92, 12)[:8]:  # 8 images across the set's categories
            Image.fromarray(bundled.image(i)).save(Path(folder) / f"{bundled.ids[i]}.png")
        stimuli = ca.load_folder(folder, name="my_images")
        feats = ca.extract_features(model, stimuli, LAYERS, pooling="mean", progress=False)
    print(f"{stimuli.name}: {len(stimuli)} images {list(stimuli.ids)}")

    direct_rdm = ca.compute_rdm(feats["blocks.5"].values, device="cpu")
    for suffix in ("npz", "mat"):
        path = ca.save_features(feats, args.out / f"features.{suffix}", overwrite=True)
        loaded = ca.load_features(path)
        same = all(np.array_equal(loaded[la].values, feats[la].values) for la in LAYERS)
        rdm = ca.compute_rdm(loaded["blocks.5"].values, device="cpu")
        print(f"{path.name}: layers {list(loaded)} shapes {[loaded[la].shape for la in LAYERS]} "
              f"model {loaded['blocks.5'].model_id}; values identical: {same}; "
              f"max |RDM - direct RDM| = {np.abs(rdm - direct_rdm).max():.1e}")
    fields = sorted(k for k in loadmat(args.out / "features.mat") if not k.startswith("__"))
    print(f"MATLAB sees the variables {fields}")

    fig = Figure(figsize=(6.0, 2.8), layout="constrained")
    for ax, (title, rdm_ss) in zip(fig.subplots(1, 2), (("direct", direct_rdm),
                                                         ("from features.mat", rdm)), strict=True):
        image = ax.imshow(rdm_ss, cmap="viridis")
        ax.set_title(f"blocks.5 RDM, {title}", fontsize=9)
        ax.set_xticks(range(len(stimuli)), [i.removesuffix(".png") for i in stimuli.ids],
                      rotation=90, fontsize=6)
        ax.set_yticks([])
    fig.colorbar(image, ax=fig.axes, label="1 - Pearson r")
    fig.savefig(args.out / "rdms.png", dpi=120)
    print(f"wrote features.npz, features.mat and rdms.png to {args.out}")


if __name__ == "__main__":
    main()
