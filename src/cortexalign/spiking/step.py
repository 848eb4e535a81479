"""One training step of a spiking transformer, run eagerly or replayed from a CUDA graph.

A training step of these models is launch-bound on a GPU: at CIFAR sizes the kernels
(convolutions on 32 x 32 maps, the fused LIF, small matmuls) finish faster than Python and
the CUDA driver can launch them, so the step's wall time is mostly CPU time. With
``cuda_graph=True`` the whole step (forward, loss, backward, AdamW) is captured once into a
CUDA graph and every later step is one replay: a copy of the batch into static buffers, one
fill of the learning rate, one graph launch.

This is PyTorch's whole-network capture recipe (``torch.cuda.graph``; docs, "CUDA Graphs"):

1. the first ``warmup`` steps run eagerly on a side stream (lazy optimizer state, cuBLAS
   workspaces and Triton's compilation all happen there, outside the capture);
2. the next step copies its batch into static buffers, sets the gradients to ``None`` (so the
   backward pass allocates them from the graph's private memory pool), captures the step and
   replays it once, which performs it;
3. every later step copies its batch into the same buffers and replays.

What a graph needs and this module provides:

- **static shapes**: every batch must have the first captured batch's shape and dtype
  (``train_snn`` uses full batches only); another shape raises ``InputError``;
- **a device-side learning rate**: ``snn_optimizer(..., capturable=True)`` builds AdamW with
  ``capturable=True`` and a 0-d CUDA tensor ``lr`` that each step fills in place, so the
  cosine schedule still acts on replays (a Python float would be frozen into the graph);
- **no host synchronisation inside the step**: the model's input finiteness check runs on
  the batch before it is copied in (``SpikingTransformer.as_sequence`` skips it while a stream
  is capturing); bf16 autocast runs with ``cache_enabled=False``, as graphs require (in eager
  steps too, see ``TrainStep._autocast``).

Eager and graphed steps do the same arithmetic in the same order (checked on an H100: the
weights after 6 steps are bit-identical for all three families, fp32 and bf16, given the same
capturable optimizer). The one difference: the
eager step checks the loss before it applies the update and skips a non-finite one, while a
replayed graph has already applied it when the loss is read (``StepOutput.applied``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cortexalign.errors import InputError

__all__ = ["TrainStep", "StepOutput", "snn_optimizer"]


def snn_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, *,
                  capturable: bool = False) -> torch.optim.AdamW:
    """AdamW over ``model``'s parameters (the QKFormer recipe's optimizer).

    ``capturable=True`` keeps the step counts and the learning rate on the parameters' CUDA
    device (``lr`` a 0-d tensor), which a CUDA-graph step needs; it raises ``InputError`` for
    parameters that are not on a CUDA device.
    """
    params = list(model.parameters())
    if not capturable:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    device = params[0].device
    if device.type != "cuda":
        raise InputError("capturable", "parameters on a CUDA device (CUDA graphs are CUDA-only)",
                         f"parameters on {device}", "move the model to 'cuda' or use capturable=False")
    return torch.optim.AdamW(params, lr=torch.tensor(float(lr), device=device),
                             weight_decay=weight_decay, capturable=True)


@dataclass
class StepOutput:
    """The loss and inference logits of a step, and whether its update was applied.

    In graph mode ``loss`` and ``logits`` are the graph's static outputs: the next step
    overwrites them, so read (or clone) them before calling the step again.
    """

    loss: torch.Tensor
    logits: torch.Tensor
    applied: bool


def _cross_entropy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits, y), logits


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)  # in place: a replayed graph reads this memory
        else:
            group["lr"] = lr


class TrainStep:
    """``step(x, y, lr)``: forward, loss, backward and an AdamW update of a spiking transformer.

    Parameters
    ----------
    model : a ``SpikingTransformer`` (anything with ``loss(x, y) -> (loss, logits)``; a module
        without ``loss``, e.g. an ANN control, is trained on the cross-entropy of its logits),
        in training mode, on its device.
    optimizer : its optimizer; for ``cuda_graph=True`` one from
        ``snn_optimizer(..., capturable=True)``.
    amp : bf16 autocast (CUDA only; ignored on the CPU).
    cuda_graph : capture the step into a CUDA graph after ``warmup`` eager steps and replay it.
    warmup : eager steps before the capture (at least 1; PyTorch's recipe uses 3).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 amp: bool = False, cuda_graph: bool = False, warmup: int = 3):
        device = next(model.parameters()).device
        if cuda_graph:
            if device.type != "cuda":
                raise InputError("cuda_graph", "a model on a CUDA device", f"a model on {device}",
                                 "set cuda_graph=False (CUDA graphs are CUDA-only)")
            bad = [i for i, g in enumerate(optimizer.param_groups)
                   if not g.get("capturable") or not isinstance(g["lr"], torch.Tensor)]
            if bad:
                raise InputError("optimizer", "AdamW with capturable=True and a tensor lr in "
                                 "every parameter group", f"param groups {bad} without them",
                                 "build it with snn_optimizer(model, lr, wd, capturable=True)")
            if warmup < 1:
                raise InputError("warmup", "at least 1 eager step before the capture",
                                 repr(warmup), "use warmup=3")
        self.model, self.optimizer, self.device = model, optimizer, device
        self._loss = getattr(model, "loss", None) or (lambda x, y: _cross_entropy(model, x, y))
        self.amp = bool(amp) and device.type == "cuda"
        self.cuda_graph, self.warmup = bool(cuda_graph), int(warmup)
        self._eager_steps = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[torch.Tensor, ...] = ()

    # ------------------------------------------------------------------ pieces
    def _autocast(self):
        # no cast cache in either mode: graphs require it off, and with it on a weight used twice
        # in a step (TDFormer's feedback pass, SpiLiFormer's inhibition) shares one bf16 cast,
        # whose gradients then add up in bf16 instead of float32: eager and graphed steps would
        # not do the same arithmetic
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp,
                              cache_enabled=False)

    def _eager(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> StepOutput:
        with self._autocast():
            loss, logits = self._loss(x, y)
        # outputs detached: a caller holding them must not keep the step's autograd graph (and
        # its parameters' AccumulateGrad nodes, bound to this step's stream) alive into the next
        # step, where a capture on another stream would have to sync with them
        if not self.cuda_graph and not torch.isfinite(loss):
            return StepOutput(loss.detach(), logits.detach(), applied=False)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _set_lr(self.optimizer, lr)
        self.optimizer.step()
        return StepOutput(loss.detach(), logits.detach(), applied=True)

    def _warmup_step(self, x, y, lr) -> StepOutput:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            out = self._eager(x, y, lr)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._eager_steps += 1
        return out

    def _capture(self, x, y, lr) -> StepOutput:
        # static inputs on the device, allocated outside the graph's pool
        sx, sy = (t.detach().to(self.device, copy=True) for t in (x, y))
        _set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)  # backward allocates .grad from the pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            with self._autocast():
                loss, logits = self._loss(sx, sy)
            loss.backward()
            self.optimizer.step()
        self._graph, self._static = graph, (sx, sy, loss.detach(), logits.detach())
        graph.replay()  # capturing records the step; the replay performs it
        return StepOutput(*self._static[2:], applied=True)

    def _replay(self, x, y, lr) -> StepOutput:
        sx, sy, loss, logits = self._static
        if x.shape != sx.shape or x.dtype != sx.dtype or y.shape != sy.shape or y.dtype != sy.dtype:
            raise InputError("x, y", f"batches shaped like the captured one: x {tuple(sx.shape)} "
                             f"{sx.dtype}, y {tuple(sy.shape)} {sy.dtype}",
                             f"x {tuple(x.shape)} {x.dtype}, y {tuple(y.shape)} {y.dtype}",
                             "use batches of one size (drop the last partial batch) or "
                             "cuda_graph=False")
        sx.copy_(x, non_blocking=True)
        sy.copy_(y, non_blocking=True)
        _set_lr(self.optimizer, lr)
        self._graph.replay()
        return StepOutput(loss, logits, applied=True)

    # ------------------------------------------------------------------ the step
    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> StepOutput:
        """One step on images ``x`` (B, C, H, W) or (T, B, C, H, W) and labels ``y`` (B,)."""
        if not self.cuda_graph:
            return self._eager(x, y, lr)
        if not torch.isfinite(x).all():  # the check the model skips inside a capture
            raise InputError("x", "finite values", "NaN or Inf", "clean the input images")
        if self._eager_steps < self.warmup:
            return self._warmup_step(x, y, lr)
        if self._graph is None:
            return self._capture(x, y, lr)
        return self._replay(x, y, lr)

    @property
    def captured(self) -> bool:
        """Whether the step has been captured (later calls replay it)."""
        return self._graph is not None
