"""SAE-BrainMap throughput: SAE training (tokens/s) and unit-voxel similarity (pairs/s).

1. SAE training: ``cortexalign.sae.train_sae`` (streaming, relu_tied, the seed's objective) vs an
   independent plain-PyTorch loop of the same SAE written here (same data, batch, optimiser).
2. Similarity: ``match_units_to_voxels`` (chunked float32 matmuls + on-the-fly reductions) vs a
   numpy baseline (``np.corrcoef`` of units and voxels per layer, then argmax).

    python benchmarks/bench_sae.py --quick            # CPU-sized
    python benchmarks/bench_sae.py --device cuda      # full sizes (d=768, 12,288 latents, ...)
    python benchmarks/bench_sae.py --device cuda --json sae.json
    OMP_NUM_THREADS=2 python benchmarks/bench_sae.py --device cpu --threads 2 \
        --train-size 200704 768 5 4096 --repeats 3   # SAE training only, reduced size

At full size the numpy baseline runs on a sub-problem (one layer, ``ref_units`` units x
``ref_voxels`` voxels; the (k + n)^2 float64 correlation matrix of the whole layer would take minutes)
and is compared on that sub-problem with ``match_units_to_voxels`` run on the same subset.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from cortexalign.sae import SAEConfig, array_chunks, train_sae
from cortexalign.sae.match import match_units_to_voxels


def reference_relu_tied(x_nd: torch.Tensor, d_sae: int, batch: int, lr: float, lam: float,
                        device: str) -> float:
    """The seed's SAE in plain PyTorch: returns seconds for one pass over x_nd.

    Same maths as ``train_sae`` with ``relu_tied`` (tied W, no decoder-norm step, the seed's
    objective, AdamW with no weight decay), without its shuffling, input checks or dead-latent
    bookkeeping. The timed region includes building the parameters and the optimiser, as
    ``train_sae``'s does.
    """
    d = x_nd.shape[1]
    _sync(device)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(1)
    W = torch.randn(d_sae, d, generator=g)
    W = (W / W.norm(dim=1, keepdim=True) / (d_sae / d) ** 0.5).to(device).requires_grad_()
    b_pre = x_nd[:batch].mean(0).to(device).requires_grad_()
    b_lat = torch.zeros(d_sae, device=device, requires_grad=True)
    opt = torch.optim.AdamW([W, b_pre, b_lat], lr=lr, weight_decay=0.0)
    for start in range(0, x_nd.shape[0] - batch + 1, batch):
        x = x_nd[start:start + batch].to(device)
        z = torch.relu((x - b_pre) @ W.T + b_lat)
        xh = z @ W + b_pre
        xn2 = (x * x).sum(1)
        loss = (((xh - x) ** 2).sum(1) / xn2).mean() + lam * (z.abs().sum(1) / xn2.sqrt()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - t0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_training(n: int, d: int, expansion: int, batch: int, device: str,
                   repeats: int = 1) -> dict:
    """Best of ``repeats`` interleaved runs of each side (ours, then the reference, per repeat)."""
    x_nd = torch.randn(n, d)
    cfg = SAEConfig(d_in=d, expansion=expansion, batch_size=batch, dead_window=10 * n)
    train_sae(array_chunks(x_nd[: 2 * batch]), cfg, device=device)  # warm-up
    reference_relu_tied(x_nd[: 2 * batch], d * expansion, batch, 5e-5, 8.6e-4, device)
    ours, ref, n_tokens = [], [], 0
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        n_tokens = train_sae(array_chunks(x_nd, 65536), cfg, device=device).n_tokens
        _sync(device)
        ours.append(time.perf_counter() - t0)
        ref.append(reference_relu_tied(x_nd, d * expansion, batch, 5e-5, 8.6e-4, device))
    assert n_tokens == n // batch * batch, (n_tokens, n, batch)  # both sides see the same tokens
    ours_tps, ref_tps = n_tokens / min(ours), n_tokens / min(ref)
    print(f"SAE training  relu_tied d={d} latents={d * expansion} batch={batch} tokens={n} "
          f"device={device} threads={torch.get_num_threads()} best of {repeats}")
    print(f"  cortexalign train_sae : {ours_tps:12,.0f} tokens/s  (runs: "
          f"{', '.join(f'{n_tokens / t:,.0f}' for t in ours)})")
    print(f"  plain PyTorch loop    : {ref_tps:12,.0f} tokens/s  (runs: "
          f"{', '.join(f'{n_tokens / t:,.0f}' for t in ref)})")
    print(f"  ratio                 : {ours_tps / ref_tps:.3f}x")
    return {"d_in": d, "latents": d * expansion, "batch": batch, "tokens": n, "device": device,
            "threads": torch.get_num_threads(), "repeats": repeats,
            "cortexalign_tokens_per_s": ours_tps, "reference_tokens_per_s": ref_tps,
            "cortexalign_runs_s": ours, "reference_runs_s": ref, "ratio": ours_tps / ref_tps}


def bench_similarity(s: int, k: int, layers: int, n: int, device: str, ref_layers: int,
                     ref_units: int | None = None, ref_voxels: int | None = None) -> dict:
    g = np.random.default_rng(0)
    units = {f"blocks.{i}": g.random((s, k), dtype=np.float32) for i in range(layers)}
    vox = g.standard_normal((s, n))
    match_units_to_voxels({"w": units["blocks.0"][:, :8]}, vox[:, :8], device=device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    m = match_units_to_voxels(units, vox, device=device)
    _sync(device)
    ours = time.perf_counter() - t0
    ku, nv = ref_units or k, ref_voxels or n
    sub = {name: a[:, :ku] for name, a in list(units.items())[:ref_layers]}
    t0 = time.perf_counter()
    best = np.full(nv, -np.inf)
    for a in sub.values():  # the baseline holds (k + n)^2 float64 per layer
        r = np.corrcoef(a.T, vox[:, :nv].T)[:ku, ku:]
        best = np.maximum(best, r.max(0))
    ref = time.perf_counter() - t0
    ours_sub = (m if (ku, nv, ref_layers) == (k, n, layers)
                else match_units_to_voxels(sub, vox[:, :nv], device=device))
    max_diff = float(np.abs(best - ours_sub.max_r_ln[:ref_layers].max(0)).max())
    assert max_diff < 1e-4, f"paths disagree by {max_diff}"
    pairs, ref_pairs = layers * k * n, ref_layers * ku * nv
    print(f"Unit-voxel similarity  images={s} layers={layers} units/layer={k} voxels={n} "
          f"device={device}")
    print(f"  cortexalign match     : {pairs / ours:14,.0f} pairs/s ({ours:.2f} s)")
    print(f"  numpy corrcoef        : {ref_pairs / ref:14,.0f} pairs/s ({ref:.2f} s, "
          f"{ref_layers} layer(s) x {ku} units x {nv} voxels); max |diff| {max_diff:.1e}")
    return {"images": s, "layers": layers, "units_per_layer": k, "voxels": n, "device": device,
            "cortexalign_s": ours, "cortexalign_pairs_per_s": pairs / ours,
            "numpy_pairs_per_s": ref_pairs / ref, "numpy_subproblem": [ref_layers, ku, nv],
            "ratio": (pairs / ours) / (ref_pairs / ref), "max_abs_diff": max_diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small CPU-sized problems")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--train-size", type=int, nargs=4, metavar=("TOKENS", "D", "EXPANSION", "BATCH"),
                   help="SAE training size only (skips the similarity), e.g. 200704 768 5 4096")
    p.add_argument("--repeats", type=int, default=1, help="interleaved repeats of the training bench")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train_size:
        n, d, expansion, batch = args.train_size
        res = {"training": bench_training(n, d, expansion, batch, args.device, args.repeats)}
    elif args.quick:
        res = {"training": bench_training(n=32768, d=64, expansion=16, batch=1024, device=args.device,
                                          repeats=args.repeats),
               "similarity": bench_similarity(s=500, k=1024, layers=2, n=1000, device=args.device,
                                              ref_layers=2)}
    else:
        res = {"training": bench_training(n=2_000_000, d=768, expansion=16, batch=16384,
                                          device=args.device, repeats=args.repeats),
               "similarity": bench_similarity(s=9000, k=12288, layers=12, n=20000,
                                              device=args.device, ref_layers=1, ref_units=2048,
                                              ref_voxels=2000)}
    res["torch"] = torch.__version__
    res["gpu"] = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
