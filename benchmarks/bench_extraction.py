"""Feature extraction throughput and memory: cortexalign vs a plain forward vs a hook-per-layer loop.

All 12 blocks of ViT-B/16 at 224 px (``--model vit_b16``: ``timm:vit_base_patch16_224``) or of
SAM ViT-B's image encoder at 1024 px (``--model sam_vit_b``: the registry's ``sam_vit_b``, SAM's
own preprocessing), random weights, loaded through ``cortexalign.models.load_model(...,
untrained=True)``, on the same random uint8 images and the same preprocessing in every mode:

- ``ours``:  ``cortexalign.features.extract_features`` (one forward pass for all blocks, mean
  over patch tokens on the device, one asynchronous host transfer per batch; bf16 autocast on
  CUDA) on a ``StimulusSet`` built beforehand: in a grid the set is built once and every model
  reuses it.
- ``host_pipeline``: only the host side of ``ours`` (``iter_batches``: decode threads and the
  batch stacking, into page-locked memory on CUDA), no copy to the device and no model: the rate
  at which the host can feed the device.
- ``stimulus_set``: building that ``StimulusSet`` (checking every image and hashing its pixels for
  the cache key), the one-time cost per set that ``ours`` leaves out.
- ``plain``: the plain forward pass ``model(x)`` (the floor: no activations kept).
- ``plain_device``: the plain forward pass ``model(x)`` of a simple loop that preprocesses each
  batch on the device (``adapter.preprocess(batch, device=...)``), as ``ours`` does: the floor
  for images in, outputs out, with the same preprocessing.
- ``preprocess``: ``adapter.preprocess`` of every batch and the host-to-device copy, no model (the
  host-side bound shared by all the modes above).
- ``preprocess_device``: the same preprocessing run on the model's device
  (``adapter.preprocess(batch, device=...)``: uint8 to the device, resize and normalise there), as
  ``ours`` does on CUDA.
- ``gpu_forward``: the plain forward on batches already preprocessed and on the device (the
  accelerator's own bound; no host work timed).
- ``naive``: a THINGSvision-style loop: a forward hook per block, each copying the full block
  output to the host as a float32 numpy array, pooled afterwards on the host (mean over patch
  tokens, or over the grid of SAM's (b, h, w, d) blocks).

Each mode runs in a fresh subprocess so its peak host memory (``ru_maxrss``) is its own; on CUDA
peak accelerator memory is ``torch.cuda.max_memory_allocated``.

    python benchmarks/bench_extraction.py --quick          # CPU, < 1 minute
    python benchmarks/bench_extraction.py --device cuda    # full size (512 images, batch 64)
    python benchmarks/bench_extraction.py --device cuda --model sam_vit_b --n-images 256 \
        --batch-size 8 --precision bf16                    # SAM ViT-B at 1024 px
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

MODES = ("ours", "plain", "plain_device", "naive", "preprocess", "preprocess_device", "gpu_forward", "host_pipeline",
         "stimulus_set")
#: --model -> (registry name, side of the square test images)
MODELS = {"vit_b16": ("timm:vit_base_patch16_224", 224), "sam_vit_b": ("sam_vit_b", 1024)}
_SIDE = {"px": 224}


def _images(n: int, seed: int = 0) -> np.ndarray:
    side = _SIDE["px"]
    return np.random.default_rng(seed).integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(images: np.ndarray, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield list(images[start:start + batch_size])


_SETS: dict = {}


def _stimulus_set(images):
    from cortexalign.stimuli import StimulusSet

    if id(images) not in _SETS:  # built once per image array, like a grid over many models
        _SETS.clear()
        _SETS[id(images)] = StimulusSet.from_arrays(images, name="bench")
    return _SETS[id(images)]


def run_ours(adapter, images, batch_size, blocks, precision):
    from cortexalign.features import extract_features

    feats = extract_features(adapter, _stimulus_set(images), blocks, pooling="mean",
                             batch_size=batch_size, progress=False, precision=precision)
    return sum(f.values.nbytes for f in feats.values())


def run_host_pipeline(adapter, images, batch_size, blocks, precision):
    from cortexalign.features._pipeline import _batch_functions, iter_batches

    prepare, _ = _batch_functions(adapter, adapter.device)
    for _ in iter_batches(_stimulus_set(images), batch_size, prepare):
        pass
    return 0


def run_stimulus_set(adapter, images, batch_size, blocks, precision):
    from cortexalign.stimuli import StimulusSet

    return len(StimulusSet.from_arrays(images, name="bench").content_hash) * 0


def run_plain(adapter, images, batch_size, blocks, precision):
    autocast = (torch.autocast(adapter.device.type, dtype=torch.bfloat16) if precision == "bf16"
                else torch.autocast(adapter.device.type, enabled=False))
    with torch.inference_mode(), autocast:
        for batch in _batches(images, batch_size):
            adapter.module(adapter.preprocess(batch).to(adapter.device))
    _sync(adapter.device)
    return 0


def run_plain_device(adapter, images, batch_size, blocks, precision):
    autocast = (torch.autocast(adapter.device.type, dtype=torch.bfloat16) if precision == "bf16"
                else torch.autocast(adapter.device.type, enabled=False))
    with torch.inference_mode():
        for batch in _batches(images, batch_size):
            x = adapter.preprocess(batch, device=adapter.device)
            with autocast:
                adapter.module(x)
    _sync(adapter.device)
    return 0


def run_naive(adapter, images, batch_size, blocks, precision):
    store: dict[str, list[np.ndarray]] = {b: [] for b in blocks}
    modules = dict(adapter.module.named_modules())
    handles = [modules[b].register_forward_hook(
        lambda m, i, o, _b=b: store[_b].append(o.detach().cpu().float().numpy()))
        for b in blocks]
    try:
        run_plain(adapter, images, batch_size, blocks, precision)
    finally:
        for h in handles:
            h.remove()
    full = {b: np.concatenate(v) for b, v in store.items()}  # (s, t, d) or (s, h, w, d) per block
    pooled = {b: (a[:, adapter.num_prefix_tokens:].mean(axis=1) if a.ndim == 3
                  else a.mean(axis=(1, 2))) for b, a in full.items()}
    return sum(a.nbytes for a in full.values()) + sum(a.nbytes for a in pooled.values())


def run_preprocess(adapter, images, batch_size, blocks, precision):
    for batch in _batches(images, batch_size):
        adapter.preprocess(batch).to(adapter.device)
    _sync(adapter.device)
    return 0


def run_preprocess_device(adapter, images, batch_size, blocks, precision):
    for batch in _batches(images, batch_size):
        adapter.preprocess(batch, device=adapter.device)
    _sync(adapter.device)
    return 0


_READY: dict = {}


def run_gpu_forward(adapter, images, batch_size, blocks, precision):
    key = (id(images), batch_size)
    if key not in _READY:  # preprocessed once, outside the timed repeats after the first call
        _READY.clear()
        _READY[key] = [adapter.preprocess(b).to(adapter.device) for b in _batches(images, batch_size)]
    autocast = (torch.autocast(adapter.device.type, dtype=torch.bfloat16) if precision == "bf16"
                else torch.autocast(adapter.device.type, enabled=False))
    with torch.inference_mode(), autocast:
        for x in _READY[key]:
            adapter.module(x)
    _sync(adapter.device)
    return 0


RUNNERS = {"ours": run_ours, "plain": run_plain, "plain_device": run_plain_device, "naive": run_naive, "preprocess": run_preprocess,
           "preprocess_device": run_preprocess_device, "gpu_forward": run_gpu_forward,
           "host_pipeline": run_host_pipeline, "stimulus_set": run_stimulus_set}


def child(args: argparse.Namespace) -> dict:
    from cortexalign.device import resolve_device
    from cortexalign.models import load_model

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    arch, _SIDE["px"] = MODELS[args.model]
    adapter = load_model(arch, untrained=True, device=device)
    blocks = [name for name in adapter.layers() if name.startswith("blocks.")]
    precision = args.precision if args.precision != "auto" else (
        "bf16" if device.type == "cuda" else "fp32")
    runner = RUNNERS[args.mode]
    runner(adapter, _images(args.batch_size, seed=1), args.batch_size, blocks, precision)  # warm-up
    images = _images(args.n_images)
    if args.mode in ("gpu_forward", "ours", "host_pipeline"):  # preprocess once / build the set once, untimed
        runner(adapter, images, args.batch_size, blocks, precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.repeats):  # best of n: the least disturbed by other processes
        _sync(device)
        t0 = time.perf_counter()
        host_bytes = runner(adapter, images, args.batch_size, blocks, precision)
        _sync(device)
        times.append(time.perf_counter() - t0)
    seconds = min(times)
    return {"mode": args.mode, "model": args.model, "image_px": _SIDE["px"],
            "device": str(device), "precision": precision,
            "n_images": args.n_images, "batch_size": args.batch_size, "layers": len(blocks),
            "seconds": seconds, "repeats": args.repeats, "images_per_s": args.n_images / seconds,
            "host_output_mb": host_bytes / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_gpu_mb": (torch.cuda.max_memory_allocated(device) / 2**20
                            if device.type == "cuda" else None)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 images, batch 2, 1 thread, on the CPU")
    p.add_argument("--n-images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is reported")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--model", choices=sorted(MODELS), default="vit_b16",
                   help="ViT-B/16 at 224 px or SAM ViT-B's encoder at 1024 px")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--mode", help=argparse.SUPPRESS)  # internal: run one mode in this process
    args = p.parse_args()
    if args.quick:
        # one intra-op thread: on a shared, oversubscribed CPU, OpenMP spinning otherwise makes
        # the timings depend on the neighbours more than on the code
        args.n_images, args.batch_size, args.device = 4, 2, "cpu"
        args.threads = args.threads or 1
        args.repeats = 2
    if args.mode:
        print(json.dumps(child(args)))
        return
    rows = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--mode", mode, "--n-images", str(args.n_images),
               "--batch-size", str(args.batch_size), "--device", args.device,
               "--precision", args.precision, "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--model", args.model]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"mode {mode} failed:\n{done.stderr}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    r0 = rows[0]
    print(f"{args.model} @{r0['image_px']}, {r0['layers']} blocks, {r0['n_images']} images, batch {r0['batch_size']}, "
          f"{r0['device']}, {r0['precision']}, best of {r0['repeats']}, torch {torch.__version__}")
    print(f"{'mode':<18}{'images/s':>10}{'seconds':>9}{'host out MB':>13}{'peak RSS MB':>13}"
          f"{'peak GPU MB':>13}")
    for r in rows:
        gpu = f"{r['peak_gpu_mb']:.0f}" if r["peak_gpu_mb"] is not None else "-"
        print(f"{r['mode']:<18}{r['images_per_s']:>10.2f}{r['seconds']:>9.2f}"
              f"{r['host_output_mb']:>13.2f}{r['peak_rss_mb']:>13.0f}{gpu:>13}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
