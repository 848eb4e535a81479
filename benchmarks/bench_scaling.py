"""Scaling: how time and peak memory grow with stimuli, features, neuroids, layers and models (issue 9).

    python benchmarks/bench_scaling.py --quick --device cpu      # small sizes, 2 threads, minutes
    python benchmarks/bench_scaling.py --device cuda             # full sizes (see SIZES)
    python benchmarks/bench_scaling.py --quick --axes stimuli streaming --json s.json

Axes (each varies one size and holds the others fixed; the data are made before the timed call):

- ``stimuli`` / ``features``: ``compute_rdm`` (correlation) into ``compare_rdms`` (Spearman, with
  a neural RDM made beforehand), and ``cka`` (linear), on random (s, d) features and (s, 100)
  responses.
- ``neuroids``: ``cross_validated_predictions(x, y, "ridge")`` (3 folds, 5 penalties).
- ``layers``: ``extract_features`` of the first L blocks of a 12-block ViT-Tiny (random weights,
  32 px images) into a fresh ``FeatureCache``.
- ``models``: M such ViTs (seeds 0..M-1) extracted into a fresh cache (``cold``), then read back
  from it (``warm``: only ``cache.get``).
- ``streaming``: the RDM of cached (s, d) float32 features: ``cache.get`` + ``compute_rdm`` (the
  features in memory) against ``cache.open`` + ``streaming_rdm`` (row blocks only).

Time is the best of ``--repeats`` runs. Peak memory is the growth of the process's resident set
during the first run: Linux's peak-RSS counter (VmHWM) is reset through /proc/self/clear_refs before
the call and read after it, minus the RSS before it (glibc's mmap threshold is pinned at 128 KiB and
the heap trimmed first, so freed blocks do not hide in the baseline). On CUDA the peak is also
``torch.cuda.max_memory_allocated`` above what was allocated before. The exponent is the slope of
log(time) or log(peak) against log(size), by least squares over the sizes of the axis.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import measure, reset_peak_rss  # sibling modules: run as a script
from _scaling_axes import BASE, FIT_AXES
from _scaling_fit import fit_rows, plot, write_json

ROOT = Path(__file__).resolve().parent.parent
FITS_JSON = ROOT / "src" / "cortexalign" / "bench" / "scaling_fits.json"
FIGURES = ROOT / "docs" / "figures"

SIZES = {  # axis -> (quick sizes, full sizes)
    "stimuli": ([250, 500, 1000, 2000], [500, 1000, 2000, 4000]),
    "features": ([1000, 2000, 4000, 8000, 16000], [1024, 2048, 4096, 8192, 16384, 32768]),
    "neuroids": ([50, 100, 200, 400], [100, 400, 1600, 6400]),
    "layers": ([1, 2, 4, 8, 12], [1, 2, 4, 8, 12]),
    "models": ([1, 2, 3], [1, 2, 3]),
    "streaming": ([500, 1000, 2000], [1000, 2000, 4000, 8000]),
}
FIXED = {  # what stays fixed on each axis: quick, full
    "quick": {"d": 1000, "s": 300, "neuroids_s": 150, "neuroids_d": 300, "images": 32,
              "img_size": 32, "stream_d": 8192},
    "full": {"d": 4096, "s": 1000, "neuroids_s": 1000, "neuroids_d": 2000, "images": 256,
             "img_size": 224, "stream_d": 32768},
}


# -- axes --------------------------------------------------------------------------------------
def _similarity_ops(x, y, device):
    from cortexalign.metrics import cka, compare_rdms, compute_rdm

    rdm_neural = compute_rdm(y, device=device, return_tensor=True)
    return {"rdm+compare": lambda: compare_rdms(compute_rdm(x, device=device, return_tensor=True),
                                                rdm_neural),
            "cka linear": lambda: cka(x, y, "linear", device=device)}


def axis_stimuli(sizes, fixed, device, repeats, rng):
    for s in sizes:
        x, y = rng.normal(size=(s, fixed["d"])), rng.normal(size=(s, 100))
        for op, fn in _similarity_ops(x, y, device).items():
            if s == sizes[0]:
                fn()  # warm-up (imports, kernels)
            yield {"op": op, "size": s, "d": fixed["d"], **measure(fn, device, repeats)}


def axis_features(sizes, fixed, device, repeats, rng):
    for d in sizes:
        x, y = rng.normal(size=(fixed["s"], d)), rng.normal(size=(fixed["s"], 100))
        for op, fn in _similarity_ops(x, y, device).items():
            yield {"op": op, "size": d, "s": fixed["s"], **measure(fn, device, repeats)}


def axis_neuroids(sizes, fixed, device, repeats, rng):
    from cortexalign.metrics._encoding import cross_validated_predictions

    s, d = fixed["neuroids_s"], fixed["neuroids_d"]
    x = rng.normal(size=(s, d))
    cross_validated_predictions(x, x[:, :3], "ridge", n_folds=3, device=device)  # warm-up
    for n in sizes:
        y = x[:, :20] @ rng.normal(size=(20, n)) + rng.normal(size=(s, n))
        fn = lambda: cross_validated_predictions(x, y, "ridge", n_folds=3, device=device,  # noqa: E731,B023
                                                 alphas=np.logspace(-2, 4, 5))
        yield {"op": "ridge cv", "size": n, "s": s, "d": d, **measure(fn, device, repeats)}


def _vits(n, fixed, device):
    from cortexalign.models import load_model

    return [load_model("timm:vit_tiny_patch16_224", untrained=True, seed=k, device=device,
                       img_size=fixed["img_size"], depth=12) for k in range(n)]


def _stimuli(fixed, rng):
    from cortexalign.stimuli import StimulusSet

    side = fixed["img_size"]
    images = rng.integers(0, 256, size=(fixed["images"], side, side, 3), dtype=np.uint8)
    return StimulusSet.from_arrays(images, name="scaling")


def _extract_fresh(adapters, stim, layers):
    from cortexalign.features import FeatureCache, extract_features

    root = tempfile.mkdtemp(prefix="bench-scaling-")
    try:
        for a in adapters:
            extract_features(a, stim, layers, pooling="mean", batch_size=32,
                             cache=FeatureCache(root), progress=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def axis_layers(sizes, fixed, device, repeats, rng):
    (vit,), stim = _vits(1, fixed, device), _stimuli(fixed, rng)
    blocks = [n for n in vit.layers() if n.startswith("blocks.")]
    _extract_fresh([vit], stim, blocks[:1])  # warm-up
    for n_layers in sizes:
        fn = lambda: _extract_fresh([vit], stim, blocks[:n_layers])  # noqa: E731,B023
        yield {"op": "extract (cache)", "size": n_layers, "images": len(stim),
               **measure(fn, device, repeats)}


def axis_models(sizes, fixed, device, repeats, rng):
    from cortexalign.features import FeatureCache, extract_features

    vits, stim = _vits(max(sizes), fixed, device), _stimuli(fixed, rng)
    layers = [n for n in vits[0].layers() if n.startswith("blocks.")][:4]
    _extract_fresh(vits[:1], stim, layers[:1])  # warm-up
    for m in sizes:
        fn = lambda: _extract_fresh(vits[:m], stim, layers)  # noqa: E731,B023
        yield {"op": "extract 4 layers, cold cache", "size": m, "images": len(stim),
               **measure(fn, device, repeats)}
        root = tempfile.mkdtemp(prefix="bench-scaling-")
        try:
            for a in vits[:m]:
                extract_features(a, stim, layers, cache=FeatureCache(root), progress=False)
            warm = lambda: [extract_features(a, stim, layers, cache=FeatureCache(root),  # noqa: E731,B023
                                             progress=False) for a in vits[:m]]  # noqa: B023
            yield {"op": "read 4 layers, warm cache", "size": m, "images": len(stim),
                   **measure(warm, device, repeats)}
        finally:
            shutil.rmtree(root, ignore_errors=True)


def axis_streaming(sizes, fixed, device, repeats, rng):
    from cortexalign.features import FeatureCache
    from cortexalign.metrics import compute_rdm, streaming_rdm

    d, key = fixed["stream_d"], "5c" * 32
    for s in sizes:
        root = tempfile.mkdtemp(prefix="bench-scaling-")
        try:
            cache = FeatureCache(root)
            cache.put(key, rng.normal(size=(s, d)).astype(np.float32))  # not kept in memory
            rows = cache.open(key).chunk_rows
            in_memory = lambda: compute_rdm(cache.get(key)[0], device=device)  # noqa: E731,B023
            streamed = lambda: streaming_rdm(cache.open(key), block_rows=rows,  # noqa: E731,B023
                                             device=device)
            for op, fn in (("in memory: get + compute_rdm", in_memory),
                           (f"streaming: open + streaming_rdm ({rows} rows)", streamed)):
                yield {"op": op, "size": s, "d": d, "features_mb": s * d * 4 / 2**20,
                       "rdm_mb": s * s * 8 / 2**20, **measure(fn, device, repeats)}
        finally:
            shutil.rmtree(root, ignore_errors=True)


AXES = {"stimuli": axis_stimuli, "features": axis_features, "neuroids": axis_neuroids,
        "layers": axis_layers, "models": axis_models, "streaming": axis_streaming, **FIT_AXES}


def exponents(rows: list[dict]) -> list[dict]:
    """Least-squares slope of log(time) and log(peak) against log(size), per axis and op."""
    out = []
    for axis, op in dict.fromkeys((r["axis"], r["op"]) for r in rows):
        sel = [r for r in rows if r["axis"] == axis and r["op"] == op]
        if len(sel) < 2:
            continue
        size = np.log([r["size"] for r in sel])
        fit = {"axis": axis, "op": op, "time": float(np.polyfit(size, np.log(
            [r["seconds"] for r in sel]), 1)[0])}
        peak = np.array([r["peak_host_mb"] for r in sel], dtype=float)
        fit["peak_host"] = (float(np.polyfit(size, np.log(peak), 1)[0])
                            if np.all(peak > 0) else None)
        out.append(fit)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (SIZES[axis][0])")
    p.add_argument("--axes", nargs="+", choices=list(AXES), default=list(AXES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", help="write the rows and the exponents to this file")
    p.add_argument("--fits", action="store_true",
                   help="measure the axes behind `cortexalign run --estimate` (score, extraction, "
                   "runner; _scaling_axes) and write src/cortexalign/bench/scaling_fits.json and "
                   "docs/figures/scaling_*.png")
    p.add_argument("--refit", metavar="JSON", help="with --fits: fit and plot the rows of an "
                   "earlier --json instead of measuring")
    args = p.parse_args(argv)
    if args.fits:
        args.axes = list(FIT_AXES)
    from _timing import limit_blas_threads  # noqa: E402  (sibling module: run as a script)
    from run_all import machine  # noqa: E402
    limit_blas_threads(args.threads)

    import torch

    from cortexalign.device import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    size, fixed = ("quick", FIXED["quick"]) if args.quick else ("full", FIXED["full"])
    info = {**machine(), "device": str(device), "threads": args.threads, "size": size,
            "fixed": fixed, "peak_rss_resettable": reset_peak_rss()}
    print(json.dumps(info), flush=True)
    rng, rows = np.random.default_rng(0), []
    load_before, started = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M")
    if args.refit:
        saved = json.loads(Path(args.refit).read_text())
        rows, info, load_before = saved["rows"], saved["machine"], saved["load_before"]
        started = saved.get("started", started)
    for axis in [] if args.refit else args.axes:
        print(f"\n## {axis}  ({'fixed: ' + json.dumps(fixed)})")
        print(f"{'op':<48}{'size':>8}{'seconds':>10}{'peak host MB':>14}{'peak GPU MB':>13}")
        for row in AXES[axis](SIZES.get(axis, ([], []))[0 if args.quick else 1], fixed, device,
                              args.repeats, rng):
            row = {"axis": axis, **row}
            rows.append(row)
            if args.json:  # rows so far, in case a later axis fails
                Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}))
            gpu = f"{row['peak_gpu_mb']:.1f}" if row["peak_gpu_mb"] is not None else "-"
            print(f"{row['op']:<48}{row['size']:>8}{row['seconds']:>10.3f}"
                  f"{row['peak_host_mb']:>14.1f}{gpu:>13}", flush=True)
    fits = exponents(rows)
    print(f"\n## exponents (log-log slope)\n{'axis':<10}{'op':<48}{'time':>7}{'peak host':>11}")
    for f in fits:
        peak = f"{f['peak_host']:.2f}" if f["peak_host"] is not None else "-"
        print(f"{f['axis']:<10}{f['op']:<48}{f['time']:>7.2f}{peak:>11}")
    load_after = os.getloadavg() if not args.refit else saved["load_after"]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "rows": rows, "exponents": fits, "started": started,
                       "load_before": load_before, "load_after": load_after}, fh, indent=1)
    if args.fits:
        _write_fits(rows, info, started, load_before, load_after)


def _write_fits(rows, info, started, load_before, load_after) -> None:
    """The shipped fits and their plots, labelled with where and under what load."""
    load = [round((a + b) / 2, 1) for a, b in zip(load_before, load_after, strict=True)]
    measured = {"when": started, "cpu": f"{info['cpu_cores']}-core CPU, torch {info['torch']}",
                "threads": info["threads"], "load_average": load,
                "command": "python benchmarks/bench_scaling.py --fits"}
    fits = fit_rows(rows, BASE, measured)
    write_json(FITS_JSON, fits)
    note = (f"{info['cpu_cores']}-core shared CPU, {info['threads']} threads, load average "
            f"{load[0]:.1f} (busy box: times are upper bounds)")
    for path in plot(rows, fits, FIGURES, note):
        print(f"wrote {path.relative_to(ROOT)}")
    print(f"wrote {FITS_JSON.relative_to(ROOT)}")
    for family, f in fits["measures"].items():
        print(f"{family:<6} time {f['time']['exponents']}  memory {f['memory']['exponents']}  "
              f"resample {f['resample']['exponents']}")
    for part, law in fits["extraction"].items():
        print(f"extraction {part}: {law['exponents']} at {law['at']:.3g}")
    print(f"runner {fits['runner']}")


if __name__ == "__main__":
    main()
