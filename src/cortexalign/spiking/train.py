"""Training and evaluation of the spiking transformers (QKFormer recipe: AdamW, lr 1e-3, wd 0.06).

``train_snn(config)`` trains the registered model ``config.model`` on an npz file or an
image folder (or, with ``model: timm:<arch>``, a timm network built untrained: the ANN control of
the spiking studies, trained by the same recipe, data order and augmentation), writes
safetensors checkpoints with a JSON description beside, resumes from the last complete
checkpoint in ``checkpoint_dir``, appends per-epoch metrics to ``checkpoint_dir/metrics.jsonl``
and stops on a non-finite loss, keeping the last good checkpoint. The training is also one job
of the results store (``results_dir``, default ``checkpoint_dir``: ``results.duckdb``, table
``training``, ``spiking._record``): its learning curves as each epoch ends, then the firing
rates and the energy estimate on test images. Data order and augmentation are drawn from
generators seeded by ``(seed, epoch)`` and ``(seed, step)``, so a resumed run repeats an
uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, field_validator

from cortexalign.compute import compute_threads
from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.spiking._checkpoint import (
    list_checkpoints,
    load_weights,
    model_from_checkpoint,
    save_checkpoint,
)
from cortexalign.spiking._data import augment_batch, load_image_data, to_input
from cortexalign.spiking._record import TrainingLog, after_training_records
from cortexalign.spiking.models import SNN_MODELS, create_snn
from cortexalign.spiking.step import TrainStep, snn_optimizer

__all__ = ["TrainConfig", "TrainResult", "train_snn", "evaluate_snn", "build_classifier",
           "step_work", "ANN_PREFIX"]

#: ``TrainConfig.model`` prefix of a timm network trained by the spiking recipe (ANN control).
ANN_PREFIX = "timm:"


class TrainConfig(BaseModel):
    """Configuration of one SNN training run (also the schema of ``train-snn`` YAML files)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    data: Path
    """An .npz file (train_images, train_labels, test_images, test_labels) or an image folder
    with train/<class>/ and val/<class>/ (or test/)."""
    checkpoint_dir: Path
    """Folder for checkpoints (ckpt_*.safetensors + .json) and metrics.jsonl."""
    model: str = "hst_tiny"
    """A registered spiking model name (SNN_MODELS), e.g. spiliformer_4_384; or ``timm:<arch>``,
    a timm network trained by the same recipe (an ANN control, cross-entropy loss)."""
    model_options: dict = {}
    """Overrides of the model's HSTConfig fields, or timm.create_model options for ``timm:``
    (num_classes and in_chans are set from the data)."""
    time_steps: int | None = None
    """T; None keeps the model's default."""
    image_size: int = 32
    """Side length images from folders are resized to (npz images are used as stored)."""
    epochs: int = 1
    """Passes over the training set."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 1e-3
    """AdamW learning rate (cosine decay to zero over the run)."""
    weight_decay: float = 0.06
    """AdamW weight decay."""
    augment: bool = True
    """Random crop (4-pixel zero padding) and horizontal flip."""
    amp: bool = True
    """bf16 autocast on CUDA (ignored on the CPU)."""
    cuda_graph: bool = False
    """Capture the training step into a CUDA graph after 3 eager steps and replay it (CUDA
    only; see cortexalign.spiking.step). Same arithmetic, far less launch overhead."""
    seed: int = 0
    """Seed of initialisation, data order and augmentation."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (None: run all epochs)."""
    max_train_samples: int | None = None
    """Use only the first n training images (quick runs)."""
    checkpoint_every: int | None = None
    """Also checkpoint every n steps (None: at the end of each epoch and of the run)."""
    keep_last: int = 3
    """Complete checkpoints kept on disk (older ones are deleted)."""
    resume: bool = True
    """Continue from the last complete checkpoint in checkpoint_dir if there is one."""
    device: str = "auto"
    """'auto', 'cpu' or 'cuda[:i]'."""
    results_dir: Path | None = None
    """The results directory whose store (results.duckdb, table ``training``) records the
    training: per-epoch curves, then firing rates and energy (None: checkpoint_dir)."""
    energy_images: int = 32
    """Test images the firing rates and the energy estimate are measured on after training
    (0: none)."""
    progress: bool = True
    """Show a rich progress bar."""

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v.startswith(ANN_PREFIX):
            import timm

            if not timm.is_model(v[len(ANN_PREFIX):]):
                raise UnknownNameError("timm model", v[len(ANN_PREFIX):], timm.list_models())
            return v
        SNN_MODELS.get(v)  # raises UnknownNameError with close matches
        return v

    @field_validator("epochs", "batch_size", "image_size", "keep_last")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @field_validator("energy_images")
    @classmethod
    def _non_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("time_steps", "max_steps", "max_train_samples", "checkpoint_every")
    @classmethod
    def _positive_or_none(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("must be >= 1 or null")
        return v


@dataclass
class TrainResult:
    """What a training run did: steps, per-epoch metrics, checkpoints, why it stopped.

    ``job_key`` is the training's job in the results store; ``records`` its rows after training
    (``results.TrainingRecord``: firing rates, energy, result), already stored unless the caller
    passed its own store.
    """

    steps: int
    epochs: list[dict] = field(default_factory=list)
    last_checkpoint: Path | None = None
    first_loss: float | None = None
    final_loss: float | None = None
    stopped_at_step: int | None = None
    stop_reason: str = "finished"
    job_key: str = ""
    records: list = field(default_factory=list)


def _batches(n: int, bs: int, seed: int, epoch: int) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).numpy()
    n_full = n // bs if n >= bs else 1
    return [perm[i * bs:(i + 1) * bs] for i in range(n_full)]


def step_work(model: torch.nn.Module, batch_size: int, image_hw: tuple[int, int]) -> float:
    """A rough multiply-add count of one training step, for the CPU thread policy
    (``cortexalign.compute``): 3 (forward and backward) x parameters x images x time steps x
    positions of a stride-8 map. Tiny models stay below ``SMALL_WORK`` and run on one thread:
    with torch's default two threads on a loaded two-core machine a step of ``hst_tiny`` took
    7-11 s of CPU instead of 0.3 s (threads spinning while their partner waits for a core)."""
    time_steps = getattr(getattr(model, "config", None), "time_steps", 1)
    n_params = sum(p.numel() for p in model.parameters())
    return (3.0 * n_params * batch_size * time_steps * max(1, image_hw[0] // 8)
            * max(1, image_hw[1] // 8))


@torch.no_grad()
def _accuracy(model, x_nhwc: np.ndarray, y: np.ndarray, device, batch_size: int = 256,
              work: float = 0.0) -> float:
    was = model.training
    model.eval()
    correct = 0
    try:
        with compute_threads(work):
            for i in range(0, len(x_nhwc), batch_size):
                xb = to_input(torch.from_numpy(x_nhwc[i:i + batch_size]).to(device))
                pred = model(xb).argmax(1).cpu()
                correct += int((pred == torch.from_numpy(y[i:i + batch_size])).sum())
        return correct / len(x_nhwc)
    finally:
        model.train(was)


def _prune(directory: Path, keep: int) -> None:
    for old in list_checkpoints(directory)[:-keep]:
        old.with_suffix(".json").unlink(missing_ok=True)
        old.unlink(missing_ok=True)


def _progress(enabled: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]train-snn"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), disable=not enabled)


def build_classifier(model: str, num_classes: int, in_chans: int, options: dict | None = None,
                     time_steps: int | None = None) -> torch.nn.Module:
    """The untrained network ``model`` names (an ``SNN_MODELS`` name or ``timm:<arch>``), built
    for ``num_classes`` and ``in_chans`` under the current torch seed.

    A timm network has no ``time_steps`` (passing one raises ``InputError``) and is trained
    with the cross-entropy of its logits (``TrainStep`` uses it for modules without ``loss``).
    """
    opts = {"num_classes": num_classes, "in_chans": in_chans, **(options or {})}
    if not model.startswith(ANN_PREFIX):
        if time_steps is not None:
            opts["time_steps"] = time_steps
        return create_snn(model, **opts)
    import timm

    if time_steps is not None:
        raise InputError("time_steps", f"null for the ANN {model!r} (it has no time steps)",
                         repr(time_steps), "leave time_steps out for a timm model")
    try:
        return timm.create_model(model[len(ANN_PREFIX):], pretrained=False, **opts)
    except TypeError as err:
        raise InputError("model_options", f"options timm's {model[len(ANN_PREFIX):]} accepts",
                         repr(options), f"remove or fix the option ({err})") from err


def train_snn(config: TrainConfig, *, store: Any = None, run_id: str | None = None
              ) -> TrainResult:
    """Train ``config.model``; see the module docstring. Returns a ``TrainResult``.

    Parameters
    ----------
    config : the training.
    store, run_id : a results store and run to write the epoch rows to (a runner's job: the
        caller stores ``TrainResult.records`` and marks the job); None records the training in
        a run of its own in ``results_dir`` (default ``checkpoint_dir``).
    """
    device = resolve_device(config.device)
    if config.cuda_graph and device.type != "cuda":
        raise InputError("cuda_graph", "a CUDA device (CUDA graphs are CUDA-only)",
                         f"device {str(device)!r}", "set cuda_graph: false, or device: cuda")
    data = load_image_data(config.data, config.image_size)
    train_x, train_y = data.train_x, data.train_y
    if config.max_train_samples is not None:
        train_x, train_y = train_x[:config.max_train_samples], train_y[:config.max_train_samples]
    torch.manual_seed(config.seed)
    model = build_classifier(config.model, data.num_classes, train_x.shape[-1],
                             config.model_options, config.time_steps).to(device)
    # capturable AdamW on every CUDA run, graphed or not: its update is computed on the device
    # (a tensor lr, device-side bias corrections), with roundings of its own, so eager and
    # graphed runs (and a resume that switches between them) follow the same arithmetic
    opt = snn_optimizer(model, config.lr, config.weight_decay, capturable=device.type == "cuda")
    per_epoch = len(_batches(len(train_x), config.batch_size, 0, 0))
    total = per_epoch * config.epochs if config.max_steps is None else min(config.max_steps, per_epoch * config.epochs)

    def lr_at(s: int) -> float:  # cosine decay, a pure function of the step (exact on resume)
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))

    ckdir = Path(config.checkpoint_dir)
    log = TrainingLog(config, store, run_id)
    try:
        result = _train(config, device, data, train_x, train_y, model, opt, per_epoch, total,
                        lr_at, ckdir, log)
    except KeyboardInterrupt:
        log.fail("interrupted", "interrupted")
        raise
    except BaseException as err:
        log.fail(f"{type(err).__name__}: {err}")
        raise
    result.job_key = log.key
    if result.stopped_at_step is not None:
        log.fail(result.stop_reason)
        return result
    n = min(config.energy_images, len(data.test_x))
    with compute_threads(step_work(model, max(n, 1), train_x.shape[1:3]) / 3):  # forward only
        result.records = after_training_records(model, data.test_x[:n], device, result,
                                                config.model)
    log.finish(result.records, replace=not config.resume)
    return result


def _train(config: TrainConfig, device, data, train_x, train_y, model, opt, per_epoch: int,
           total: int, lr_at, ckdir: Path, log: TrainingLog) -> TrainResult:
    """The training loop of ``train_snn`` (resume, steps, per-epoch rows, checkpoints)."""
    step, result = 0, TrainResult(steps=0)
    done = list_checkpoints(ckdir) if config.resume else []
    if done:
        meta = load_weights(model, done[-1], opt)
        step = int(meta["step"])
        result.last_checkpoint, result.epochs = done[-1], list(meta.get("epochs", []))
    train_step = TrainStep(model, opt, amp=config.amp, cuda_graph=config.cuda_graph)
    work = step_work(model, config.batch_size, train_x.shape[1:3])
    meta_cfg = {"model_name": config.model, "train_config": json.loads(config.model_dump_json())}
    model.train()

    def checkpoint(epoch: int) -> None:
        result.last_checkpoint = save_checkpoint(ckdir, step, model, opt,
                                                 {**meta_cfg, "epoch": epoch, "epochs": result.epochs})
        _prune(ckdir, config.keep_last)

    recent: list[float] = []
    with _progress(config.progress) as bar:
        task = bar.add_task("train", total=total, completed=step, info="")
        while step < total:
            epoch, index = divmod(step, per_epoch)
            batches = _batches(len(train_x), config.batch_size, config.seed, epoch)
            losses, correct, seen, t0, steps0 = [], 0, 0, time.perf_counter(), step
            for idx in batches[index:]:
                if step >= total:
                    break
                xb = torch.from_numpy(train_x[idx])
                if config.augment:
                    xb = augment_batch(xb, torch.Generator().manual_seed(config.seed * 7919 + step))
                xb, yb = to_input(xb.to(device)), torch.from_numpy(train_y[idx]).to(device)
                with compute_threads(work):  # one thread for small steps, fewer on a busy CPU
                    out = train_step(xb, yb, lr_at(step))
                loss, logits = out.loss, out.logits
                if not torch.isfinite(loss):
                    result.stopped_at_step, result.stop_reason = step + 1, f"non-finite loss ({loss.item()}) at step {step + 1}"
                    if out.applied:  # a replayed CUDA graph updates before the loss is read
                        result.stop_reason += " (its update was applied to the model in memory)"
                    result.steps = step
                    return result
                step += 1
                lv = float(loss.detach())
                result.first_loss = lv if result.first_loss is None else result.first_loss
                losses.append(lv)
                recent = (recent + [lv])[-20:]
                correct += int((logits.argmax(1) == yb).sum())
                seen += len(idx)
                bar.update(task, completed=step, info=f"epoch {epoch + 1} loss {np.mean(recent):.3f}")
                if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total:
                    checkpoint(epoch)
            if not losses:
                continue
            elapsed = time.perf_counter() - t0
            row = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)),
                   "train_acc": correct / max(seen, 1),
                   "test_acc": _accuracy(model, data.test_x, data.test_y, device, work=work),
                   "seconds": elapsed, "seconds_per_step": elapsed / (step - steps0)}
            result.epochs.append(row)
            ckdir.mkdir(parents=True, exist_ok=True)
            with open(ckdir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"model": config.model, **row}) + "\n")
            log.epoch(row)
            checkpoint(epoch + 1)
    result.steps = step
    result.final_loss = float(np.mean(recent)) if recent else None
    return result


def evaluate_snn(checkpoint: str | Path, data: str | Path, batch_size: int = 256,
                 device: str = "auto", image_size: int = 32) -> float:
    """Test accuracy of the model saved in ``checkpoint`` on the test split of ``data``."""
    dev = resolve_device(device)
    model = model_from_checkpoint(checkpoint).to(dev)
    d = load_image_data(data, image_size)
    if d.num_classes > model.config.num_classes:
        raise InputError("data", f"labels below {model.config.num_classes} (the model's classes)",
                         f"{d.num_classes} classes", "evaluate on the dataset the model was trained for")
    return _accuracy(model, d.test_x, d.test_y, dev, batch_size)
