"""Correlation RDMs at the sizes users have: cortexalign vs THINGSvision's ``compute_rdm``.

    python benchmarks/bench_thingsvision_rdm.py                 # 92, 118, 300, 1,000 stimuli
    python benchmarks/bench_thingsvision_rdm.py --modes quiet --features 4096

THINGSvision 2.7.3 cannot be installed beside our pins (numpy<2, torchvision==0.15.2,
tensorflow<2.16), but its RDM code is one NumPy module: this script downloads the wheel from PyPI
(``pip download thingsvision==2.7.3 --no-deps``, once, into ``--cache``), imports
``thingsvision/core/rsa/helpers.py`` from it as a standalone module and times its
``compute_rdm(X, "correlation")`` against ``cortexalign.metrics.compute_rdm(X, "correlation")``,
both NumPy in, NumPy out, interleaved repeat by repeat, quiet and with ``--busy`` background
processes (see bench_small.py). numba, which that module imports for its Gaussian kernel only, is
replaced by a no-op decorator when it is not installed (the correlation path does not use it).
Prints the time of each, THINGSvision's time over ours (``> 1``: we are faster) and the largest
difference between the two RDMs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import types
import zipfile
from pathlib import Path

from _timing import limit_blas_threads  # sibling module: run as a script
from bench_small import interleaved, start_busy, stop_busy

VERSION = "2.7.3"


def thingsvision_rdm(cache: Path):
    """THINGSvision's ``compute_rdm``, imported from its wheel's rsa/helpers.py."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob(f"thingsvision-{VERSION}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        str(cache), f"thingsvision=={VERSION}"], check=True)
        wheels = list(cache.glob(f"thingsvision-{VERSION}-*.whl"))
    src = cache / "thingsvision_rsa_helpers.py"
    with zipfile.ZipFile(wheels[0]) as z:
        src.write_bytes(z.read("thingsvision/core/rsa/helpers.py"))
    try:
        import numba  # noqa: F401
    except ImportError:
        stub = types.ModuleType("numba")
        stub.njit = lambda *a, **k: (lambda f: f)
        stub.prange = range
        sys.modules["numba"] = stub
    spec = importlib.util.spec_from_file_location("thingsvision_rsa_helpers", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.compute_rdm


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[92, 118, 300, 1000])
    p.add_argument("--features", type=int, default=1000)
    p.add_argument("--modes", nargs="+", default=["quiet", "busy"], choices=["quiet", "busy"])
    p.add_argument("--busy", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="BLAS threads")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "cortexalign-bench")
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args(argv)
    limit_blas_threads(args.threads)
    import numpy as np

    from cortexalign.metrics import compute_rdm

    tv_rdm = thingsvision_rdm(args.cache)
    rows = []
    for mode in args.modes:
        print(f"== {mode} ({args.busy if mode == 'busy' else 0} busy background processes)")
        procs = start_busy(args.busy) if mode == "busy" else []
        try:
            for s in args.sizes:
                x = np.random.default_rng(s).standard_normal((s, args.features))
                t = interleaved({"ours": lambda x=x: compute_rdm(x, "correlation"),
                                 "thingsvision": lambda x=x: tv_rdm(x, "correlation")},
                                args.repeats)
                diff = float(np.abs(compute_rdm(x, "correlation") - tv_rdm(x, "correlation")).max())
                ratio = t["thingsvision"] / t["ours"]
                rows.append({"mode": mode, "stimuli": s, "features": args.features,
                             "ours_s": t["ours"], "thingsvision_s": t["thingsvision"],
                             "ratio": ratio, "max_abs_diff": diff})
                print(f"{s:6d} x {args.features}  ours {t['ours'] * 1e3:8.2f} ms   thingsvision "
                      f"{t['thingsvision'] * 1e3:8.2f} ms   thingsvision/ours {ratio:6.2f}x   "
                      f"|diff| {diff:.1e}", flush=True)
        finally:
            stop_busy(procs)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
