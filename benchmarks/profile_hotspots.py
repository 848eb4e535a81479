"""Where the time goes in the benchmarks that miss issue 9's targets (torch.profiler tables).

    python benchmarks/profile_hotspots.py --device cuda          # issue sizes
    python benchmarks/profile_hotspots.py --quick                # tiny sizes on the CPU

Profiles one call each of: one outer fold of the ridge encoder (``_ridge_fold``: 1,600 x 8,000
training stimuli x features, 20,000 targets, 11 penalties), SAM ViT-B ``attention_maps`` of all
blocks at 1024 px, and our multi-step LIF forward + backward (T=4, 64 x 24,576). Prints the
operators with the most device (or CPU) time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile


def _table(fn, device, rows: int, title: str) -> None:
    fn()  # warm-up
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(f"\n== {title}: {time.perf_counter() - t0:.3f} s wall (profiled)", flush=True)
    print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rows", type=int, default=12)
    p.add_argument("--only", nargs="+", default=["ridge", "attention", "lif"])
    a = p.parse_args()
    device = torch.device(a.device)
    rng = np.random.default_rng(0)
    if "ridge" in a.only:
        from cortexalign.metrics._encoding import _ridge_fold

        s, d, n = (200, 300, 500) if a.quick else (1600, 8000, 20000)
        x, y = rng.normal(size=(s + s // 4, d)), rng.normal(size=(s, n))
        _table(lambda: _ridge_fold(x[:s], y, x[s:], device=device, seed=0,
                                   alphas=np.logspace(-3, 7, 11)), device, a.rows,
               f"ridge fold {s} x {d} x {n}, 11 penalties")
    if "attention" in a.only:
        import timm

        from cortexalign.models.attention import attention_maps

        img = 256 if a.quick else 1024
        model = timm.create_model("samvit_base_patch16", img_size=img).eval().to(device)
        xb = torch.randn(1, 3, img, img, device=device)
        _table(lambda: attention_maps(model, xb, reduction="received"), device, a.rows,
               f"SAM ViT-B attention_maps {img} px, batch 1, fp32")
    if "lif" in a.only:
        from cortexalign.spiking.neurons import lif_multistep

        shape = (4, 8, 4096) if a.quick else (4, 64, 24576)
        xs = torch.randn(shape, device=device).mul_(1.5).add_(0.8).requires_grad_()
        w = torch.randn(shape, device=device)
        _table(lambda: (lif_multistep(xs, backend="auto")[0] * w).sum().backward(), device, a.rows,
               f"LIF forward+backward {shape}, backend auto")


if __name__ == "__main__":
    main()
