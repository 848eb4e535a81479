"""SAM ViT-B image encoder: attention maps of every block vs the plain forward pass.

Measures images per second and peak memory of

- ``forward``: timm's ``model(x)`` under ``torch.inference_mode`` (the encoder as timm ships it:
  the physical reference);
- ``forward_fused``: the same weights with cortexalign's ``SamFusedAttention`` (what
  ``load_model("sam_vit_b")`` builds: 4-D SDPA with an aligned bias, so CUDA can fuse it);
- ``maps``: ``attention_maps(model, x, reduction="received")`` for all 12 blocks (8 windowed, 4
  global) on the fused model, ``backend="auto"`` (the Triton kernel on CUDA, chunks on the CPU);
- ``maps_chunked``: the same on timm's model with ``backend="chunked"`` (the earlier path; GPU
  runs only).

Random weights (timm ``samvit_base_patch16``, nothing downloaded). Targets: maps within 2x of the
forward pass's time and memory (issue 3); at least 100 maps/s on an H100 (issue 9).

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above what the weights and input hold;
on the CPU each mode runs in a fresh subprocess and reports its peak RSS above the RSS after the
model is built (``resource.getrusage``), so one mode's peak does not hide the other's.

Usage::

    python benchmarks/bench_attention.py              # 1024 x 1024, batch 1, CUDA when present
    python benchmarks/bench_attention.py --quick      # 256 x 256 on the CPU (a smoke-size run)
    python benchmarks/bench_attention.py --batch 8 --bf16 --json att.json   # bf16 autocast, JSON
    python benchmarks/bench_attention.py --ops --img 1024   # operator counts per block (CPU profiler)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import timm
import torch

from cortexalign.device import resolve_device
from cortexalign.models.attention import attention_maps
from cortexalign.models.sam import use_fused_attention

MODES = ("forward", "forward_fused", "maps", "maps_chunked")


def _build(img: int, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("samvit_base_patch16", img_size=img).eval().to(device)


def _run_mode(mode: str, img: int, batch: int, reps: int, device: torch.device,
              bf16: bool = False) -> dict:
    model = _build(img, device)
    if mode in ("forward_fused", "maps"):
        use_fused_attention(model)
    x = torch.randn(batch, 3, img, img, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            if mode.startswith("forward"):
                with torch.inference_mode():
                    model(x)
            else:
                attention_maps(model, x, reduction="received",
                               backend="chunked" if mode == "maps_chunked" else "auto")

    rss_base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # weights + input, no forward yet
    step()  # warm-up (kernel selection, allocator)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / reps
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:  # ru_maxrss is in KiB on Linux: the peak of warm-up and timed runs above the baseline
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_base) * 1024
    return {"mode": mode, "images_per_s": batch / seconds, "peak_mib": peak / 2**20,
            "seconds_per_batch": seconds, "img": img, "batch": batch, "reps": reps,
            "precision": "bf16" if bf16 else "fp32", "torch": torch.__version__}


OPS = ("aten::bmm", "aten::mm", "aten::matmul", "aten::einsum", "aten::copy_", "aten::clone",
       "aten::index", "aten::softmax")


def _count_ops(model: torch.nn.Module, x: torch.Tensor, blocks) -> dict[str, int]:
    """Operator calls of one ``attention_maps`` call (or of the plain forward when blocks is False)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        if blocks is False:
            with torch.inference_mode():
                model(x)
        else:
            attention_maps(model, x, blocks=blocks, reduction="received")
    counts = {e.key: e.count for e in prof.key_averages()}
    out = {op: counts.get(op, 0) for op in OPS}
    out["all aten ops"] = sum(c for k, c in counts.items() if k.startswith("aten::"))
    return out


def _ops_table(img: int, batch: int) -> None:
    """Operators that attention maps add over the forward: one windowed block, one global, all 12."""
    model = _build(img, torch.device("cpu"))
    x = torch.randn(batch, 3, img, img)
    fwd = _count_ops(model, x, False)
    cases = {"windowed (blocks.0)": ["blocks.0.attn"], "global (blocks.2)": ["blocks.2.attn"],
             "all 12 blocks": None}
    print(f"operator calls added to the forward, SAM ViT-B {img}x{img}, batch {batch}, CPU profiler")
    print(f"{'op':16s}" + "".join(f"{c:>22s}" for c in cases))
    rows = {c: _count_ops(model, x, b) for c, b in cases.items()}
    for op in (*OPS, "all aten ops"):
        print(f"{op:16s}" + "".join(f"{rows[c][op] - fwd[op]:22d}" for c in cases))


def _run_cpu_child(mode: str, args) -> dict:
    """One mode in a fresh interpreter so its RSS peak is its own."""
    cmd = [sys.executable, __file__, "--child", mode, "--img", str(args.img), "--batch",
           str(args.batch), "--reps", str(args.reps), "--device", "cpu"] + (["--bf16"] if args.bf16 else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="256 px, CPU, 2 repetitions")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in both modes")
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--ops", action="store_true", help="count operator calls (CPU profiler)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.img, args.reps, args.device = 256, 2, "cpu"
    if args.ops:
        _ops_table(args.img, args.batch)
        return
    device = resolve_device(args.device)
    if args.child:
        print(json.dumps(_run_mode(args.child, args.img, args.batch, args.reps, device, args.bf16)))
        return
    if device.type == "cpu":
        rows = [_run_cpu_child(m, args) for m in MODES[:3]]
    else:
        rows = [_run_mode(m, args.img, args.batch, args.reps, device, args.bf16) for m in MODES]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"SAM ViT-B, {args.img}x{args.img}, batch {args.batch}, {args.reps} reps, {name}, "
          f"{'bf16' if args.bf16 else 'fp32'}, torch {torch.__version__}")
    print(f"{'mode':14s} {'img/s':>9s} {'s/batch':>9s} {'peak MiB':>9s}")
    for r in rows:
        print(f"{r['mode']:14s} {r['images_per_s']:9.3f} {r['seconds_per_batch']:9.3f} "
              f"{r['peak_mib']:9.1f}")
    by = {r["mode"]: r for r in rows}
    for ref in ("forward", "forward_fused"):
        print(f"maps / {ref}: time x{by[ref]['images_per_s'] / by['maps']['images_per_s']:.2f}, "
              f"peak memory x{by['maps']['peak_mib'] / max(by[ref]['peak_mib'], 1e-9):.2f}")
    print(f"forward_fused / forward: speed x"
          f"{by['forward_fused']['images_per_s'] / by['forward']['images_per_s']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{**r, "device": name} for r in rows], f, indent=1)


if __name__ == "__main__":
    main()
