"""Start-up of the command line (issue 25): ``cortexalign --help``, ``cortexalign models`` and
``cortexalign config --help``, each in a fresh process as a user types it, against
``python -c 'import torch'`` (what every command paid before the ``cli/`` package).

Reports, per command, the median and best wall time over ``--repeats`` runs and the CPU time
(user + system of the child process, which a busy machine does not inflate the way it inflates
wall time), and whether the process imported torch. ``--cores 0,1`` pins the children to two
cores (``taskset``), the size of the machine the target (under a second) is set for.

    python benchmarks/bench_startup.py --repeats 7 --cores 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "cortexalign --help": ["--help"],
    "cortexalign models": ["models"],
    "cortexalign config --help": ["config", "--help"],
}
#: Runs the console script's entry point and says whether torch was imported.
_ENTRY = ("import sys; from cortexalign.cli import main; sys.argv = ['cortexalign', *sys.argv[1:]]\n"
          "try:\n    main()\nexcept SystemExit:\n    pass\n"
          "sys.stderr.write('TORCH=%s' % ('torch' in sys.modules))")


def _run(argv: list[str], cores: str | None) -> tuple[float, float, bool]:
    """Wall seconds, CPU seconds (user + sys) and whether torch was imported, for one run."""
    prefix = ["taskset", "-c", cores] if cores and shutil.which("taskset") else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([*prefix, *argv], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "100"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed: {done.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, "TORCH=True" in done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cores", default="0,1", help="taskset core list ('' for none)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    cases = {name: [sys.executable, "-c", _ENTRY, *argv] for name, argv in COMMANDS.items()}
    cases["python -c 'import torch' (reference)"] = [sys.executable, "-c", "import torch"]
    rows = []
    for name, argv in cases.items():
        _run(argv, args.cores)  # warm the file cache
        runs = [_run(argv, args.cores) for _ in range(args.repeats)]
        walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
        rows.append({"command": name, "wall_median_s": statistics.median(walls),
                     "wall_best_s": min(walls), "cpu_median_s": statistics.median(cpus),
                     "imports_torch": runs[0][2] if name.startswith("cortexalign") else True})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"{'command':40s} {'wall median':>12s} {'wall best':>10s} {'CPU median':>11s}  torch")
    for r in rows:
        print(f"{r['command']:40s} {r['wall_median_s']:11.2f}s {r['wall_best_s']:9.2f}s "
              f"{r['cpu_median_s']:10.2f}s  {'yes' if r['imports_torch'] else 'no'}")
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; cores {args.cores or 'all'}")


if __name__ == "__main__":
    main()
