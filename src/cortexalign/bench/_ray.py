"""The Ray executor: one streaming Ray task per model; the driver writes every result.

Where the cluster comes from (``ray.address`` in the config)
    ``null``: this process's Ray if one is already initialised (a notebook, a test fixture),
    otherwise a local Ray started for the run with ``ray.num_workers`` CPUs and shut down after.
    ``auto``: the cluster this machine belongs to (``ray start``, ``RAY_ADDRESS``).
    ``host:port`` or ``ray://host:port``: that cluster. The address is probed first (TCP connect
    and an HTTP/2 handshake, which Ray's gRPC endpoints answer at once), so an address that does
    not answer fails within ``ray.timeout_s`` instead of hanging inside ``ray.init``.

Scheduling
    A task per unit of work (``bench._analysis``: a model of the score grid) loads it once,
    extracts the layers its unfinished jobs need once (feature cache under ``cache_dir``: a
    shared filesystem, or an object store URL such as ``s3://bucket/cache``, so that workers on
    other nodes reuse each other's entries without a shared disk) and scores them. The package
    itself travels to the workers (the job's runtime_env ``py_modules``, set when the run starts
    or connects to Ray, unless ``ray.ship_package`` is off): the nodes need its dependencies
    only; a Ray the caller initialised is used as it is. Each task asks for
    ``ray.num_cpus_per_worker`` CPUs
    and ``ray.num_gpus_per_extraction`` GPUs (default: 1 when the cluster has GPUs and the
    config's device is not ``cpu``, else 0), so Ray places models on free GPUs; the worker picks
    its device from ``device`` as a local run would (Ray sets ``CUDA_VISIBLE_DEVICES``). At most
    ``ray.num_workers`` tasks are in flight when it is set. Ray itself does not retry a task
    (``max_retries=0``): a unit whose worker dies (killed, out of memory, node lost) is submitted
    again by the driver, up to ``ray.max_retries`` times, with the jobs the driver wrote meanwhile
    among the finished ones (they are not redone); after that its unfinished jobs are recorded as
    failed and a rerun retries them. An error raised by the work itself is not retried.

Results
    The task streams its store writes back as events (``bench._executors``); the driver applies
    them one job = one transaction, as the local executor does. Stimuli, targets and the set of
    finished jobs travel once per run in Ray's object store.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.progress import Progress

from cortexalign.bench._analysis import Unit
from cortexalign.bench._config import ExperimentConfig
from cortexalign.bench._executors import (
    EXECUTORS,
    PROGRESS_COLUMNS,
    EventWriter,
    RunContext,
    UnitWork,
    model_events,
)
from cortexalign.errors import InputError

log = logging.getLogger("cortexalign.bench")

__all__ = ["RayExecutor", "probe_address"]

# HTTP/2 connection preface + an empty SETTINGS frame: a gRPC server answers with its SETTINGS.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_DEFAULT_PORTS = {"ray": 10001, "": 6379}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("executor", "Ray installed for executor: ray", "no module named 'ray'",
                         "pip install ray, or set executor: local") from None
    return ray


def probe_address(address: str, timeout_s: float) -> None:
    """Raise ``InputError`` unless a gRPC endpoint answers at ``address`` within ``timeout_s``.

    ``address`` is ``host:port`` or ``ray://host:port``. A refused or unreachable port fails at
    once; a host that accepts but never answers fails after ``timeout_s``.
    """
    parts = urlsplit(address if "://" in address else f"//{address}")
    fix = ("start the cluster (`ray start --head`), check host and port, use address: auto on a "
           "cluster node, or leave ray.address unset to start a local Ray")
    try:
        host, port = parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme, 6379)
    except ValueError:
        host, port = None, None
    if not host:
        raise InputError("ray.address", "'auto', 'host:port' or 'ray://host:port'", repr(address),
                         fix)
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(_H2_PREFACE)
            head = sock.recv(9)
    except OSError as err:  # refused, unreachable, timed out, unknown host
        raise InputError("ray.address", "a Ray cluster that answers", f"{address!r}: "
                         f"{type(err).__name__}: {err or 'no answer'} (waited at most "
                         f"{timeout_s:g} s)", fix) from None
    if len(head) < 4 or head[3] != 4:  # frame type 4 = SETTINGS
        raise InputError("ray.address", "a Ray cluster (gRPC) at this address",
                         f"{address!r}, where something answered that is not gRPC", fix)


def _model_task(work: UnitWork, ctx: RunContext, unit: Unit, cache_root: str):
    """The body of the Ray task: resolve the device here, then stream the unit's events."""
    from cortexalign.device import resolve_device

    yield from model_events(work, ctx, unit, cache_root, resolve_device(ctx.config.device))


class RayExecutor:
    """One streaming Ray task per model; the driver writes the store. See the module docstring."""

    name = "ray"

    def __init__(self, config: ExperimentConfig):
        self.config = config
        self.spec = config.ray
        self._started = False
        self._ray: Any = None

    # -- connection ---------------------------------------------------------------------------
    def open(self) -> None:
        """Connect to (or start) Ray; fails within ``ray.timeout_s`` when the address is dead."""
        ray = self._ray = _import_ray()
        address = self.spec.address
        if address is None and ray.is_initialized():
            self._callers_ray()
            return  # the caller's Ray: leave it running
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                      configure_logging=False)
        if self._runtime_env() is not None:  # local folders ship at the job level only
            kwargs["runtime_env"] = self._runtime_env()
        if address is None:
            n_cpus = (self.spec.num_workers or os.cpu_count() or 1) * self.spec.num_cpus_per_worker
            kwargs["num_cpus"] = max(1, round(n_cpus))
        elif address == "auto":
            if ray.is_initialized():
                self._callers_ray()
                return
        else:
            probe_address(address, self.spec.timeout_s)
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as err:
            raise InputError("ray.address", "a running Ray cluster", f"{address!r}: {err}",
                             "run `ray start --head` (or set RAY_ADDRESS), or leave ray.address "
                             "unset to start a local Ray") from None
        self._started = True

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False

    # -- work ---------------------------------------------------------------------------------
    def _num_gpus(self) -> float:
        if self.spec.num_gpus_per_extraction is not None:
            return self.spec.num_gpus_per_extraction
        has_gpu = self._ray.cluster_resources().get("GPU", 0) > 0
        return 1.0 if has_gpu and self.config.device != "cpu" else 0.0

    def _runtime_env(self) -> dict[str, Any] | None:
        """The package, shipped to the workers (``ray.ship_package``): the job's runtime_env
        when this executor starts or connects to Ray (Ray uploads a local folder only then)."""
        if not self.spec.ship_package:
            return None
        import cortexalign

        return {"py_modules": [str(Path(cortexalign.__file__).parent)]}

    def _callers_ray(self) -> None:
        if self.spec.ship_package:
            log.info("executor: ray uses the Ray this process already initialised: the package "
                     "is not shipped (pass runtime_env={'py_modules': [<cortexalign folder>]} "
                     "to your ray.init, or let the run start or connect to Ray)")

    def _shared(self, ctx: RunContext) -> Any:
        """What a worker needs, in Ray's object store; the store, console and hooks stay in the
        driver. ``finished`` as of now (a resubmitted unit skips what was written since)."""
        return self._ray.put(dataclasses.replace(ctx, store=None, cache=None, summary=None,
                                                 console=None, on_job_done=None, device=None,
                                                 bar=None, finished=set(ctx.finished)))

    def run(self, work: UnitWork, ctx: RunContext, units: list[Unit]) -> None:
        ray = self._ray
        task = ray.remote(_model_task).options(
            num_returns="streaming", max_retries=0, num_cpus=self.spec.num_cpus_per_worker,
            num_gpus=self._num_gpus(), name="cortexalign-model")
        shared = self._shared(ctx)
        # absolute folder or URL: a worker's working directory is not the driver's; on one
        # machine, a shared filesystem or an object store the driver then reads the workers'
        # entries for the partitions
        cache_root = ctx.cache.url
        todo: list[tuple[EventWriter, int]] = [(EventWriter(ctx, unit), 0) for unit in units]
        limit = self.spec.num_workers
        live: dict[Any, tuple[EventWriter, int]] = {}
        bars: dict[Any, Any] = {}
        with Progress(*PROGRESS_COLUMNS, console=ctx.console, disable=not ctx.progress) as bar:
            while todo or live:
                while todo and (limit is None or len(live) < limit):
                    writer, attempt = todo.pop(0)
                    unit = writer.unit
                    bar_id = bar.add_task(f"{unit.title or unit.label} (ray"
                                          + (f", retry {attempt})" if attempt else ")"),
                                          total=None)
                    writer.advance = lambda b=bar_id: bar.advance(b)
                    gen = task.remote(work, shared if attempt == 0 else self._shared(ctx),
                                      unit, cache_root)
                    live[gen], bars[gen] = (writer, attempt), bar_id
                ready, _ = ray.wait(list(live), num_returns=1)
                gen = ready[0]
                writer, attempt = live[gen]
                try:
                    writer.apply(ray.get(next(gen)))
                except StopIteration:
                    del live[gen]
                    done = next(t.completed for t in bar.tasks if t.id == bars[gen])
                    bar.update(bars.pop(gen), total=done, completed=done)
                except (ray.exceptions.RayError, OSError) as err:
                    del live[gen]
                    bar.remove_task(bars.pop(gen))
                    died = isinstance(err, ray.exceptions.RayError) and not isinstance(
                        err, ray.exceptions.RayTaskError)  # the worker, not the work, failed
                    if died and attempt < self.spec.max_retries:
                        writer.retried(err)
                        todo.insert(0, (writer, attempt + 1))
                        continue
                    writer.lost(getattr(err, "cause", None) or err)


EXECUTORS["ray"] = RayExecutor
