"""Run every benchmark of ``benchmarks/`` and collect the figures in one JSON file and one log.

    python benchmarks/run_all.py --quick               # small sizes on the CPU, a few minutes
    python benchmarks/run_all.py --out bench-out       # full sizes (a GPU; see BENCHMARKS.md)
    python benchmarks/run_all.py --only rsa ridge      # a subset, by name (see BENCHMARKS below)

Each benchmark runs as its own subprocess (so one failure, or one timeout, does not stop the
others, and each one's peak host memory is its own), with ``--json`` pointing into ``--out``.
``--out/results.json`` maps each benchmark's name to its runs: the command, the exit status, the
wall time and the figures the script wrote; ``--out/run_all.log`` holds every script's output.
The figures, and the machines they were taken on, are recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> {"quick": [args of each run], "full": [...]}; each run's args follow the script name.
BENCHMARKS: dict[str, dict[str, list[list[str]]]] = {
    "rsa": {
        "quick": [["bench_rsa.py", "--quick", "--device", "cpu"]],
        "full": [["bench_rsa.py", "--device", "cuda", "--threads", "16", "--repeats", "3",
                  "--peer-repeats", "1", "--peer-max", "2500",
                  "--sizes", "1000", "2500", "5000", "10000", "20000"]],
    },
    "cka": {
        "quick": [["bench_cka.py", "--quick", "--device", "cpu"]],
        "full": [["bench_cka.py", "--device", "cuda", "--threads", "16",
                  "--sizes", "1000", "2500", "5000"]],
    },
    "extraction": {
        "quick": [["bench_extraction.py", "--quick"]],
        "full": [["bench_extraction.py", "--device", "cuda", "--n-images", "2048",
                  "--batch-size", "256", "--repeats", "2", "--precision", "bf16"],
                 ["bench_extraction.py", "--device", "cuda", "--model", "sam_vit_b",
                  "--n-images", "256", "--batch-size", "8", "--repeats", "2", "--precision", "bf16",
                  "--modes", "ours,plain_device,gpu_forward,naive"]],
    },
    "attention": {
        "quick": [["bench_attention.py", "--quick"]],
        "full": [["bench_attention.py", "--device", "cuda", "--batch", "1", "--reps", "5"],
                 ["bench_attention.py", "--device", "cuda", "--batch", "8", "--reps", "5", "--bf16"]],
    },
    "ridge": {
        "quick": [["bench_ridge.py", "--size", "quick", "--device", "cpu"]],
        "full": [["bench_ridge.py", "--size", "issue9", "--n-alphas", "11", "--skip-sklearn",
                  "--device", "cuda"]],
    },
    "banded": {
        "quick": [["bench_banded.py", "--quick", "--device", "cpu"]],
        "full": [["bench_banded.py", "--device", "cuda", "--stimuli", "2000", "--spaces", "2000",
                  "4000", "8000", "--targets", "20000", "--n-iter", "20"]],
    },
    "sae": {
        "quick": [["bench_sae.py", "--quick", "--device", "cpu"]],
        "full": [["bench_sae.py", "--device", "cuda"]],
    },
    "spiking": {
        "quick": [["bench_spiking.py", "--quick", "--device", "cpu"]],
        "full": [["bench_spiking.py", "--device", "cuda"],
                 ["bench_spiking.py", "--device", "cuda", "--model", "hst_4_384", "--batch", "64"]],
    },
    "scaling": {
        "quick": [["bench_scaling.py", "--quick", "--device", "cpu"]],
        "full": [["bench_scaling.py", "--device", "cuda", "--threads", "16"]],
    },
    "layer_similarity": {
        "quick": [["bench_layer_similarity.py", "--quick", "--device", "cpu"]],
        "full": [["bench_layer_similarity.py", "--device", "cuda", "--threads", "16",
                  "--stimuli", "5000"]],
    },
    "searchlight": {
        "quick": [["bench_searchlight.py", "--quick", "--device", "cpu"]],
        "full": [["bench_searchlight.py", "--device", "cuda", "--threads", "16"],
                 ["bench_searchlight.py", "--device", "cuda", "--threads", "16",
                  "--shape", "81", "104", "83", "--peer-max-centres", "8000"]],
    },
    "startup": {  # issue 25: --help and models under a second on 2 cores
        "quick": [["bench_startup.py", "--repeats", "3"]],
        "full": [["bench_startup.py", "--repeats", "7"]],
    },
    "rsa_cpu2": {  # issue 9's CPU target: 2 cores, 2,500 stimuli x 10,000 features
        "quick": [],
        "full": [["bench_rsa.py", "--device", "cpu", "--threads", "2", "--repeats", "1",
                  "--sizes", "2500"]],
    },
}


def machine() -> dict:
    """What the figures were measured on."""
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__, "gpu": gpu,
            "cpu_cores": os.cpu_count(), "platform": platform.platform()}


def run_one(args: list[str], timeout: float, log) -> dict:
    """One benchmark script in a subprocess; its output goes to the console and ``log``."""
    with tempfile.TemporaryDirectory() as tmp:
        json_path = Path(tmp) / "out.json"
        cmd = [sys.executable, str(HERE / args[0]), *args[1:], "--json", str(json_path)]
        header = f"\n$ python benchmarks/{' '.join(args)}\n"
        print(header, end="", flush=True)
        log.write(header)
        t0 = time.perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
            rc, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            rc = "timeout"
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = f"timed out after {timeout:.0f} s\n"
        seconds = time.perf_counter() - t0
        text = out + (f"[stderr, exit {rc}]\n{err[-4000:]}" if rc != 0 else "")
        print(text, end="", flush=True)
        log.write(text)
        log.flush()
        result = json.loads(json_path.read_text()) if json_path.exists() else None
    return {"command": f"python benchmarks/{' '.join(args)}", "exit": rc, "seconds": seconds,
            "result": result}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes on the CPU")
    p.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    p.add_argument("--out", default="bench-out", help="folder for results.json and run_all.log")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per benchmark run")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = "quick" if args.quick else "full"
    results: dict = {"size": size, "machine": machine(), "benchmarks": {}}
    print(json.dumps(results["machine"]), flush=True)
    failed = []
    with open(out / "run_all.log", "a") as log:
        log.write(f"\n# run_all {size} {time.strftime('%Y-%m-%d %H:%M:%S')} "
                  f"{json.dumps(results['machine'])}\n")
        for name in args.only or list(BENCHMARKS):
            runs = [run_one(a, args.timeout, log) for a in BENCHMARKS[name][size]]
            results["benchmarks"][name] = runs
            failed += [r["command"] for r in runs if r["exit"] != 0]
            (out / "results.json").write_text(json.dumps(results, indent=1))  # after each one
    print(f"\nwrote {out / 'results.json'} and {out / 'run_all.log'}; "
          f"{len(failed)} failed{': ' + '; '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
