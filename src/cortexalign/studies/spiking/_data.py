"""The spiking study's data: the task images (CIFAR-10) and the Allen-layout brain target.

Task: ``--data`` may hold a CIFAR-10 npz in the ``load_image_data`` layout (``DIR`` itself,
``DIR/cifar10_subset/cifar10_subset.npz``, ``DIR/cifar10_subset.npz`` or ``DIR/cifar10.npz``) or
an image folder (``DIR/train/<class>/``, ``DIR/val/<class>/``); without one the CPU subset uses
the four-class set shipped in the package (``cortexalign/data/cifar10_tiny``). The plan's
classes and per-class counts are selected (first images of each class, in file order) and
written to ``OUT/data/task.npz``, which every model trains on.

Brain: the 92 object images with human and monkey IT RDMs ship with the package. The
Allen-layout target is ``DIR/allen`` (a Brain Observatory cache: fetched with ``cortexalign
fetch allen-ophys`` or written by a simulator) or, without one, a small simulation written by
``simulate`` (the jalil2026 simulator at the size ``SIM_SPEC``) into ``OUT/simulated``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from cortexalign.errors import InputError
from cortexalign.studies.jalil2026 import Planted, SimSpec, simulate_spec

__all__ = ["TaskData", "SHIPPED", "SIM_SPEC", "task_source", "select_task", "allen_source",
           "simulate"]

SHIPPED = ("data", "cifar10_tiny", "cifar10_tiny.npz")
"""Where the four-class CIFAR-10 set lies in the package."""

SIM_SPEC = SimSpec(
    n_images=48, image_hw=(96, 120), trials=10, areas=("VISp", "VISl", "VISal"),
    experiments=(("Cux2-CreERT2", 175), ("Sst-IRES-Cre", 375)), cells=12, coco_images=1,
    coco_hw=(64, 64), noise=1.0,
    planted=Planted(model={"name": "sam_vit_b", "untrained": True,
                           "kwargs": {"tiny": True, "img_size": 128}},
                    block="blocks.3.attn", area="VISal", cre_line="Cux2-CreERT2", depth=175))
"""The simulated Allen-layout target: 48 grey scenes (96 x 120 px) shown 10 times, three areas x
two (Cre line, depth) experiments x 12 neurons. As in the jalil2026 simulator, one group (VISal /
Cux2 / L2/3) follows an untrained tiny SAM's attention and every other neuron has a sparse random
image selectivity: nothing is planted for the spiking models, so their scores here check the
pipeline, not a biological claim."""


@dataclass(frozen=True)
class TaskData:
    """The task set the models were trained on (``OUT/data/task.npz``) and where it came from."""

    path: Path
    classes: tuple[str, ...]
    n_train: int
    n_test: int
    source: str

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def _shipped() -> Path:
    return Path(str(resources.files("cortexalign").joinpath(*SHIPPED)))


def task_source(data: Path | None, required: bool) -> Path:
    """The task data under ``data`` (see the module docstring), or the shipped set when
    ``data`` holds none and the plan does not require one."""
    if data is not None:
        data = Path(data)
        for cand in (data, data / "cifar10_subset" / "cifar10_subset.npz",
                     data / "cifar10_subset.npz", data / "cifar10.npz"):
            if cand.is_file() and cand.suffix == ".npz":
                return cand
        if (data / "train").is_dir():
            return data
    if required:
        raise InputError("--data", "a folder holding CIFAR-10 (cifar10_subset/"
                         "cifar10_subset.npz, cifar10.npz, or train/ and val/ image folders)",
                         repr(str(data)) if data is not None else "nothing",
                         "pass --data with the CIFAR-10 set (the full study trains on all of "
                         "it), or --subset cpu to use the four classes shipped in the package")
    return _shipped()


def _class_names(path: Path, num_classes: int) -> list[str]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "classes" in z.files:
                return [str(c) for c in z["classes"]]
        return [str(i) for i in range(num_classes)]
    return sorted(p.name for p in (path / "train").iterdir() if p.is_dir())


def _take(x: np.ndarray, y: np.ndarray, keep: list[int], n: int | None):
    idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:n] for c in keep]))
    return x[idx], np.searchsorted(np.asarray(keep), y[idx]).astype(np.int64)


def select_task(source: Path, classes: tuple[str, ...] | None, n_train: int | None,
                n_test: int | None, out: Path) -> TaskData:
    """Write the plan's selection of ``source`` to ``out`` (an npz) and describe it."""
    from cortexalign.atomic import write_atomic
    from cortexalign.spiking import load_image_data

    d = load_image_data(source)
    names = _class_names(Path(source), d.num_classes)
    wanted = list(names) if classes is None else list(classes)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise InputError("--data", f"images of the classes {wanted}", f"{str(source)!r} with "
                         f"classes {names}", "pass CIFAR-10 with its class names (an npz with a "
                         "'classes' array, or image folders named by class)")
    keep = sorted(names.index(c) for c in wanted)
    tr_x, tr_y = _take(d.train_x, d.train_y, keep, n_train)
    te_x, te_y = _take(d.test_x, d.test_y, keep, n_test)
    for split, y in (("training", tr_y), ("test", te_y)):
        counts = np.bincount(y, minlength=len(keep))
        if counts.min() == 0:
            raise InputError("--data", f"{split} images of every class kept", f"counts "
                             f"{counts.tolist()} for {[names[k] for k in keep]}",
                             "pass a data set with every class in both splits")
    kept = tuple(names[k] for k in keep)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda p: np.savez(p, train_images=tr_x, train_labels=tr_y,
                                         test_images=te_x, test_labels=te_y,
                                         classes=np.array(kept)))
    label = "cortexalign's four CIFAR-10 classes" if Path(source) == _shipped() else str(source)
    return TaskData(out, kept, len(tr_y), len(te_y), label)


def allen_source(data: Path | None, out: Path, progress: bool) -> tuple[Path, bool]:
    """``(allen folder, simulated?)``: ``DATA/allen`` when given, else the simulation in
    ``OUT/simulated`` (written once; a rerun reuses it)."""
    if data is not None and (Path(data) / "allen").is_dir():
        return Path(data) / "allen", False
    sim = out / "simulated"
    if not (sim / "allen").is_dir():
        simulate(sim, progress=progress)
    return sim / "allen", True


def simulate(out: str | Path, size: str = "cpu", seed: int = 0, progress: bool = True) -> Path:
    """The study's simulator (``cortexalign simulate spiking --out DIR``): an Allen Brain
    Observatory cache of ``SIM_SPEC``'s size in ``DIR/allen`` (the jalil2026 simulator's
    layout; see its docs for the files), for scoring the models against an Allen-layout
    target without a download. ``size``: ``"cpu"`` only (real data: ``cortexalign fetch
    allen-ophys``)."""
    if size != "cpu":
        raise InputError("--size", "'cpu'", repr(size), "pass --size cpu; for real data "
                         "fetch the Allen survey (`cortexalign fetch allen-ophys`)")
    return simulate_spec(out, SIM_SPEC, seed=seed, progress=progress)
