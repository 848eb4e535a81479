"""Attention maps of every block of two vision transformers, from one forward pass each.

``attention_maps`` recomputes each block's attention from its own q and k inside the forward
pass (fused attention kernels keep running) and returns a (b, gh, gw) map per block: "received"
is the attention each patch receives, averaged over heads and queries; "rollout" multiplies the
attention of successive global blocks (Abnar & Zuidema 2020). Models: a tiny, untrained Segment
Anything ViT (windowed and global blocks, 128 px) and timm's ViT-Tiny/16, untrained (offline; pass
``weights=PATH`` to ``load_model`` for trained maps). Untrained maps are close to uniform.

Run:  python examples/03_attention_maps.py [--out DIR] [--n-images 3]
Writes DIR/attention_sam_vit_b_tiny.png and DIR/attention_vit_tiny.png (rows: images; columns:
the input, the received map of every block, the rollout of the last global block).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import cortexalign as ca

MODELS = {  # file stem -> (name, load_model options)
    "sam_vit_b_tiny": ("sam_vit_b", {"untrained": True, "tiny": True, "img_size": 128}),
    "vit_tiny": ("timm:vit_tiny_patch16_224", {"untrained": True}),
}


def map_grid(model, images: list[np.ndarray]) -> tuple[Figure, dict[str, np.ndarray]]:
    x_bchw = model.preprocess(images)
    received = ca.attention_maps(model.module, x_bchw, reduction="received")
    rollout = ca.attention_maps(model.module, x_bchw, reduction="rollout")
    last = list(rollout)[-1]
    panels = {name.removesuffix(".attn"): m for name, m in received.items()}
    panels[f"rollout\n{last.removesuffix('.attn')}"] = rollout[last]
    # show what the model saw: the preprocessed input, un-normalised
    mean, std = np.array(model.preprocess.mean), np.array(model.preprocess.std)
    shown_bhwc = (x_bchw.permute(0, 2, 3, 1).numpy() * std + mean).clip(0, 1)
    fig = Figure(figsize=(1.1 * (len(panels) + 1), 1.2 * len(images)), layout="constrained")
    axes = fig.subplots(len(images), len(panels) + 1, squeeze=False)
    for i, row in enumerate(axes):
        row[0].imshow(shown_bhwc[i])
        for ax, (title, m) in zip(row[1:], panels.items(), strict=True):
            ax.imshow(m[i].numpy(), cmap="magma")
            if i == 0:
                ax.set_title(title, fontsize=7)
        for ax in row:
            ax.set_axis_off()
    return fig, {k: v.numpy() for k, v in panels.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem)
    parser.add_argument("--n-images", type=int, default=3)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    stimuli = ca.load_stimuli("kriegeskorte92")
    images = list(stimuli.images(range(0, 92, 92 // args.n_images)[: args.n_images]))
    for stem, (name, options) in MODELS.items():
        model = ca.load_model(name, device="cpu", **options)
        fig, maps = map_grid(model, images)
        fig.savefig(args.out / f"attention_{stem}.png", dpi=110)
        for title, m_bhw in maps.items():  # peak: 1.0 would be perfectly uniform attention
            peak = float((m_bhw.max(axis=(1, 2)) / m_bhw.mean(axis=(1, 2))).mean())
            print(f"{model.model_id:46s} {title.replace(chr(10), ' '):22s} grid "
                  f"{m_bhw.shape[1]}x{m_bhw.shape[2]}  peak/mean {peak:.2f}")
        print(f"wrote {args.out / f'attention_{stem}.png'}")


if __name__ == "__main__":
    main()
