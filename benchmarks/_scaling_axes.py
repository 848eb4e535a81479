"""The measurements behind the shipped cost fits (``bench_scaling.py --fits``; run as a script).

Each axis varies one size around the base point ``BASE`` and holds the others there:

- ``score``: ``score(measure, X_sd, Y_sn)`` for ``rsa`` (correlation RDM, Spearman), ``cka_linear``
  and ``ridge`` (its default inner CV) on random features and responses, without resampling,
  against stimuli s, features d and neuroids n; then the cost of one bootstrap resample against
  s: (time with ``RESAMPLES`` resamples - time without) / ``RESAMPLES`` (best of the repeats).
- ``extraction``: ``extract_features`` of the last layer of DNNs of growing size (random
  weights, 224 px, ``EXTRACT_IMAGES`` images in one batch): seconds per image and peak memory
  growth per image (the activations), against the FLOPs of one image (counted on the meta device
  by ``bench.architecture_sizes``, as ``--estimate`` does) and against the parameter count.
  ``gabor_v1`` is measured too but left out of the fit (``EXTRACT_OUTLIERS``): a filter bank
  whose cost is not in its counted FLOPs.
- ``runner``: ``run_experiment`` (92 bundled stimuli, one RDM target, ``rsa`` without bootstrap,
  no report) against layers L of a ViT-Tiny (random weights, 32 px) and models M (small Gabor
  banks): the time per run, whose slope in jobs is the runner's seconds per job.
"""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
from _memory import measure  # sibling module: run as a script

BASE = {"stimuli": 200, "features": 1000, "neuroids": 100}
SWEEPS = {"stimuli": [100, 200, 400, 800], "features": [250, 500, 1000, 2000, 4000],
          "neuroids": [25, 50, 100, 200, 400]}
MEASURES = ("rsa", "cka_linear", "ridge")
RESAMPLES = {"rsa": 20, "cka_linear": 20, "ridge": 200}  # ridge resamples its predictions: cheap
EXTRACT_IMAGES = 16
EXTRACT_MODELS = ("timm:mobilenetv3_small_100", "efficientnet_lite0", "timm:resnet18",
                  "timm:vit_tiny_patch16_224", "timm:vit_small_patch16_224", "timm:resnet50",
                  "gabor_v1")
EXTRACT_OUTLIERS = ("gabor_v1",)
RUNNER_LAYERS, RUNNER_MODELS = [1, 2, 4, 8, 12], [1, 2, 4, 8]


def _data(rng, s: int, d: int, n: int):
    from cortexalign.neural import make_responses

    x_sd = rng.normal(size=(s, d))
    y_sn = x_sd[:, :10] @ rng.normal(size=(10, n)) + rng.normal(size=(s, n))
    return x_sd, make_responses(y_sn, [f"s{i}" for i in range(s)])


def axis_score(sizes, fixed, device, repeats, rng):
    """Rows of ``score`` per measure against each size of ``SWEEPS`` (``sizes`` is ignored)."""
    from cortexalign.metrics import score

    for name in MEASURES:
        x, y = _data(rng, 50, 50, 10)
        score(name, x, y, n_bootstrap=2, seed=0)  # warm-up (imports, kernels)
        for axis, values in SWEEPS.items():
            for v in values:
                at = {**BASE, axis: v}
                x, y = _data(rng, at["stimuli"], at["features"], at["neuroids"])
                fn = lambda: score(name, x, y, n_bootstrap=0, seed=0)  # noqa: E731,B023
                yield {"op": name, "axis": axis, "size": v, **at, **measure(fn, device, repeats)}
        for s in SWEEPS["stimuli"]:
            x, y = _data(rng, s, BASE["features"], BASE["neuroids"])
            plain = measure(lambda: score(name, x, y, n_bootstrap=0, seed=0), device,  # noqa: B023
                            repeats)
            boot = measure(lambda: score(name, x, y, n_bootstrap=RESAMPLES[name],  # noqa: B023
                                         seed=0), device, repeats)
            per = max(boot["seconds"] - plain["seconds"], 1e-6) / RESAMPLES[name]
            yield {"op": name, "axis": "resample", "size": s, "stimuli": s, "seconds": per,
                   "peak_host_mb": boot["peak_host_mb"], "peak_gpu_mb": boot["peak_gpu_mb"]}


def axis_extraction(sizes, fixed, device, repeats, rng):
    """Seconds and activation memory per image of extraction against FLOPs and parameters."""
    from cortexalign.bench import architecture_sizes
    from cortexalign.features import extract_features
    from cortexalign.models import load_model
    from cortexalign.stimuli import StimulusSet

    images = rng.integers(0, 256, size=(EXTRACT_IMAGES, 224, 224, 3), dtype=np.uint8)
    stim = StimulusSet.from_arrays(images, name="scaling-extract")
    for name in EXTRACT_MODELS:
        model = load_model(name, untrained=True, device=device)
        layer = model.layers()[-1]
        sizes = architecture_sizes(name, {}, [layer])
        fn = lambda: extract_features(model, stim, [layer], batch_size=EXTRACT_IMAGES,  # noqa: E731,B023
                                      progress=False)
        fn()  # warm-up
        row = measure(fn, device, repeats)
        op = "extract (not fitted)" if name in EXTRACT_OUTLIERS else "extract"
        common = {"op": op, "model": name, "layer": layer, "images": EXTRACT_IMAGES,
                  "flops": sizes.flops, "parameters": sizes.parameters,
                  "seconds": row["seconds"] / EXTRACT_IMAGES,
                  "peak_host_mb": row["peak_host_mb"] / EXTRACT_IMAGES,
                  "peak_gpu_mb": row["peak_gpu_mb"]}
        yield {**common, "axis": "flops", "size": sizes.flops}
        yield {**common, "axis": "parameters", "size": sizes.parameters}


def _run_config(models: list[dict]) -> dict:
    return {"name": "scaling", "stimuli": {"source": "kriegeskorte92"}, "models": models,
            "neural": [{"source": "kriegeskorte92.human_IT"}], "metrics": [{"name": "rsa"}],
            "n_bootstrap": 0, "batch_size": 46}


def _timed_run(config: dict, device, repeats: int) -> dict:
    from cortexalign.bench import load_config, run_experiment

    cfg = load_config(config)
    dirs: list[str] = []

    def once() -> None:  # a fresh directory and cache each time: every job runs
        dirs.append(tempfile.mkdtemp(prefix="bench-runner-"))
        summary = run_experiment(cfg, dirs[-1], progress=False)
        assert summary.ok, summary.failures

    try:
        return measure(once, device, repeats)
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def axis_runner(sizes, fixed, device, repeats, rng):
    """``run_experiment`` against layers (one ViT-Tiny) and models (Gabor banks)."""
    vit = {"name": "timm:vit_tiny_patch16_224", "untrained": True,
           "kwargs": {"img_size": 32, "depth": 12}}
    _timed_run(_run_config([dict(vit, layers=["blocks.0"])]), device, 1)  # warm-up
    for n in RUNNER_LAYERS:
        row = _timed_run(_run_config([dict(vit, layers=[f"blocks.{k}" for k in range(n)])]),
                         device, repeats)
        yield {"op": "runner", "axis": "layers", "size": n, "jobs": n, **row}
    for m in RUNNER_MODELS:
        gabors = [{"name": "gabor_v1", "label": f"gabor {k}", "layers": ["complex"],
                   "pooling": "grid2", "kwargs": {"image_size": 48, "image_deg": None,
                                                  "frequencies": [0.12, 0.25 + 0.01 * k]}}
                  for k in range(m)]
        yield {"op": "runner", "axis": "models", "size": m, "jobs": m,
               **_timed_run(_run_config(gabors), device, repeats)}


FIT_AXES = {"score": axis_score, "extraction": axis_extraction, "runner": axis_runner}
