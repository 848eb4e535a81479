"""``train_aligned(config)``: task loss + lambda x alignment loss, for timm and spiking models.

Each step draws a task batch (a pure function of ``(seed, step)``, so a resumed run repeats an
uninterrupted one) and the alignment batch of *training* stimuli; the loss is ``task + lam *
AlignmentLoss(layer features)``. With ``lam = 0`` the alignment batch still passes through the
model in train mode (its loss is recorded, not minimised), so that batch-norm statistics see the
same images in every run and a ``lam > 0`` run differs from its ``lam = 0`` twin by the
alignment gradient alone. Every ``eval_every`` steps (and at the end) the
model is scored in eval mode: task accuracy on the task's test images and the hard metric the
objective trains (``metric_of``) on the training and on the held-out stimuli. The points go to
``results.duckdb`` in the run folder as they are made, and a checkpoint (``checkpoint.py``)
follows each evaluation. The final held-out score carries a bootstrap interval over held-out
stimuli and the noise ceiling of the held-out stimuli.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cortexalign.align.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from cortexalign.align.config import AlignConfig
from cortexalign.align.data import load_task_data, model_input
from cortexalign.align.record import CurveRecorder
from cortexalign.align.split import StimulusSplit
from cortexalign.align.target import BrainTarget, metric_of
from cortexalign.compute import compute_threads
from cortexalign.device import resolve_device
from cortexalign.errors import InputError

__all__ = ["AlignResult", "train_aligned"]


@dataclass
class AlignResult:
    """What a run did: steps, the evaluation curve, the final held-out score, files."""

    out: Path
    steps: int
    model_id: str
    split: StimulusSplit
    curve: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    last_checkpoint: Path | None = None
    seconds: float = 0.0
    heldout_features: dict = field(default_factory=dict)
    """Final eval-mode features of the held-out stimuli, (s, d) CPU tensors per layer, in the
    order of ``split.heldout``."""


def _as_config(config) -> AlignConfig:
    if isinstance(config, AlignConfig):
        return config
    if isinstance(config, str | Path):
        import yaml

        return AlignConfig(**yaml.safe_load(Path(config).read_text()))
    return AlignConfig(**dict(config))


def _split(target: BrainTarget, out: Path, resume: bool) -> BrainTarget:
    """Write the split before anything is fitted; a resumed run must keep the split it wrote."""
    path = out / "split.json"
    if path.is_file() and resume:
        import json

        old = StimulusSplit.from_json(json.loads(path.read_text()))
        if set(old.train) != set(target.split.train):
            raise InputError("split", "the stimulus split the run folder was started with",
                             f"another split from the config ({path})",
                             "restore the split settings, or use a new out folder")
        return target.with_split(old)
    target.split.write(path)
    return target


def _task_loss(module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    from cortexalign.spiking import SpikingTransformer

    if isinstance(module, SpikingTransformer):
        return module.loss(x, y)[0]  # the family's own loss (all training heads)
    return torch.nn.functional.cross_entropy(module(x), y)


@torch.no_grad()
def _accuracy(module, x: torch.Tensor, y: torch.Tensor, device, batch: int = 500) -> float:
    correct = 0
    for i in range(0, len(x), batch):
        logits = module(x[i:i + batch].to(device))
        correct += int((logits.argmax(1).cpu() == y[i:i + batch]).sum())
    return correct / len(x)


class _Run:
    """The state of one run: model, data, target, loss, optimiser (built once)."""

    def __init__(self, cfg: AlignConfig):
        from cortexalign.models import Preprocess, load_model

        self.cfg, self.device = cfg, resolve_device(cfg.device)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        target = BrainTarget.load(cfg.target, cfg.stimuli, cfg.heldout_fraction, cfg.split_seed,
                                  cfg.category_key)
        self.target = _split(target, self.out, cfg.resume)
        self.loss = self.target.loss(cfg.objective, cfg.options())
        self.metric, self.metric_options = metric_of(cfg.objective, cfg.options())
        task = load_task_data(cfg.task_data, cfg.max_task_train, cfg.max_task_test,
                              cfg.image_size)
        self.task_source = task.source
        options = dict(cfg.model_options)
        if cfg.model.startswith("snn:"):  # training sets the batch-norm statistics itself
            options.setdefault("bn_calibration", "none")
        self.adapter = load_model(cfg.model, untrained=True, seed=cfg.seed, device=self.device,
                                  num_classes=task.num_classes, **options)
        self.layers = self.adapter.check_layers(cfg.layers)
        p = self.adapter.preprocess
        prep = Preprocess(size=(cfg.image_size, cfg.image_size), mean=p.mean, std=p.std,
                          resize="stretch")
        self.train_x, self.train_y = model_input(task.train_x, prep), torch.as_tensor(task.train_y)
        self.test_x, self.test_y = model_input(task.test_x, prep), torch.as_tensor(task.test_y)
        split = self.target.split
        self.brain = {part: model_input(self.target.images(ids), prep).to(self.device)
                      for part, ids in (("train", split.train), ("heldout", split.heldout))}
        self.module = self.adapter.module
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)

    def step_work(self) -> float:
        """A rough multiply-add count of one step for the thread policy (``compute_threads``):
        3 (forward + backward) x parameters x images x output positions of a stride-8 map.
        Small models on small images stay below ``SMALL_WORK`` and run on one thread."""
        n_params = sum(p.numel() for p in self.module.parameters())
        images = self.cfg.batch_size + (self.cfg.align_batch or len(self.loss.train_ids))
        return 3.0 * n_params * images * max(1, self.cfg.image_size // 8) ** 2

    def lr_at(self, step: int) -> float:
        """Cosine decay to zero over ``steps`` (a function of the step: exact on resume)."""
        return self.cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step, self.cfg.steps)
                                                 / self.cfg.steps))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Task batch (random flips) and alignment stimuli of ``step`` (seeded by it)."""
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(len(self.train_x), (cfg.batch_size,), generator=g)
        x = self.train_x[idx]
        flip = torch.rand(len(idx), generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        ids = list(self.loss.train_ids)
        if cfg.align_batch is not None and cfg.align_batch < len(ids):
            pick = torch.randperm(len(ids), generator=g)[:cfg.align_batch].sort().values
            ids = [ids[i] for i in pick.tolist()]
        return x.to(self.device), self.train_y[idx].to(self.device), ids

    def step(self, step: int) -> tuple[float, float]:
        """One optimiser step; returns (task loss, alignment loss)."""
        x, y, ids = self.batch(step)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(step)
        task = _task_loss(self.module, x, y)
        # the alignment batch goes through the model in train mode for every lambda, 0 included:
        # batch-norm statistics then see the same images in every run, and a lambda > 0 run
        # differs from its lambda = 0 twin by the alignment gradient alone
        self.loss.check_ids(ids)  # before any image is looked up
        rows = torch.as_tensor([self.loss.train_ids.index(i) for i in ids], device=self.device)
        feats = self.adapter.forward_layers(self.brain["train"][rows], self.layers, grad=True)
        align = self.loss(feats, ids)
        align_value = float(align.detach())
        total = task + self.cfg.lam * align.to(task.dtype) if self.cfg.lam > 0 else task
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        if not math.isfinite(float(total.detach())):
            raise InputError("lr", "a run whose loss stays finite", f"loss {float(total.detach())} at "
                             f"step {step}", "lower lr or lam")
        return float(task.detach()), align_value

    def features(self, part: str) -> dict[str, torch.Tensor]:
        """Eval-mode features of the ``part`` stimuli (no gradient)."""
        out = self.adapter.forward_layers(self.brain[part], self.layers)
        return {k: v.flatten(1) for k, v in out.items()}

    def evaluate(self, step: int, n_bootstrap: int = 0) -> dict:
        """Task accuracy and the hard metric on train and held-out stimuli, per layer."""
        was = self.module.training
        self.module.eval()
        try:
            point = {"step": step,
                     "accuracy": _accuracy(self.module, self.test_x, self.test_y, self.device)}
            for part in ("train", "heldout"):
                for layer, f in self.features(part).items():
                    try:
                        s = self.target.heldout_score(
                            f, self.metric, self.metric_options, part=part, seed=self.cfg.seed,
                            n_bootstrap=n_bootstrap if part == "heldout" else 0)
                    except InputError as err:  # e.g. a silent spiking layer: nothing to score
                        s = None
                        point.setdefault("unscored", []).append(f"{part}/{layer}: {err}")
                    point[f"{part}/{layer}"] = s
            return point
        finally:
            self.module.train(was)


def train_aligned(config) -> AlignResult:
    """Train ``config.model`` with the alignment regulariser (see the module docstring).

    Parameters
    ----------
    config : an ``AlignConfig``, a dict of its fields, or the path of a YAML file.

    Returns
    -------
    AlignResult. The run folder holds ``split.json`` (written before any fit), checkpoints,
    ``results.duckdb`` (the curve and the final scores) and ``report.md``.
    """
    cfg = _as_config(config)
    t0 = time.perf_counter()
    run = _Run(cfg)
    ckdir = run.out / "checkpoints"
    step, curve = 0, []
    done = list_checkpoints(ckdir) if cfg.resume else []
    if done:
        meta = load_checkpoint(done[-1], run.module, run.opt)
        step, curve = int(meta["step"]), list(meta.get("curve", []))
    recorder = CurveRecorder(run.out, cfg, run.adapter.model_id, run.target, run.task_source,
                             run.metric)
    result = AlignResult(run.out, step, run.adapter.model_id, run.target.split, curve,
                         last_checkpoint=done[-1] if done else None)
    every = cfg.checkpoint_every or cfg.eval_every
    work = run.step_work()
    losses: list[tuple[float, float]] = []
    run.module.train()
    with _progress(cfg.progress) as bar:
        task_bar = bar.add_task("train", total=cfg.steps, completed=step, info="")
        while step < cfg.steps:
            with compute_threads(work):
                losses.append(run.step(step))
            step += 1
            last = step == cfg.steps
            if step % cfg.eval_every == 0 or last:
                with compute_threads(work):
                    point = run.evaluate(step, n_bootstrap=1000 if last else 0)
                task_l = float(np.mean([a for a, _ in losses]))
                al = [b for _, b in losses if math.isfinite(b)]
                point.update(task_loss=task_l, align_loss=float(np.mean(al)) if al else math.nan)
                losses.clear()
                curve.append(recorder.record(point, final=last))
                bar.update(task_bar, info=recorder.describe(curve[-1]))
            if step % every == 0 or last:
                result.last_checkpoint = save_checkpoint(
                    ckdir, step, run.module, run.opt, recorder.meta(curve))
                for old in list_checkpoints(ckdir)[:-cfg.keep_last]:
                    for suffix in (".json", ".optim.safetensors", ".safetensors"):
                        old.with_suffix(suffix).unlink(missing_ok=True)
            bar.update(task_bar, completed=step)
    result.steps, result.curve = step, curve
    was = run.module.training
    run.module.eval()
    try:
        result.heldout_features = {k: v.cpu() for k, v in run.features("heldout").items()}
    finally:
        run.module.train(was)
    result.final = curve[-1] if curve else {}
    recorder.write_report()
    result.seconds = time.perf_counter() - t0
    return result


def _progress(enabled: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]train-aligned"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
                    TimeRemainingColumn(), disable=not enabled)
