"""Forward hooks and module-state flips, each undone in ``finally`` (STYLE.md habits 3 and 10)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from cortexalign.errors import InputError

__all__ = ["capture_outputs", "eval_mode", "seeded", "StopForward"]


class StopForward(Exception):
    """Raised from a hook once every requested output is captured, to skip the rest of the net."""


@contextmanager
def capture_outputs(module: nn.Module, paths: Sequence[str], *,
                    stop_early: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Capture the outputs of the submodules at ``paths`` during a forward pass.

    Parameters
    ----------
    module : the network.
    paths : submodule names as in ``module.named_modules()``.
    stop_early : raise ``StopForward`` as soon as every path has fired; the caller runs the forward
        inside ``try/except StopForward``.

    Yields
    ------
    dict path -> output tensor, filled while the forward runs. Every hook is removed on exit, also
    when the forward raises.
    """
    modules = dict(module.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = []
    wanted = set(paths)

    def make_hook(path: str):
        def hook(_mod: nn.Module, _inputs: tuple, output: object) -> None:
            if not isinstance(output, torch.Tensor):
                raise InputError("layers", f"a submodule whose output is a tensor ({path!r})",
                                 f"a {type(output).__name__}",
                                 "pick a submodule that returns a single tensor (or its child)")
            captured[path] = output
            if stop_early and wanted.issubset(captured):
                raise StopForward

        return hook

    try:
        for path in paths:
            handles.append(modules[path].register_forward_hook(make_hook(path)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's own ``training`` flag on exit."""
    flags = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block under ``torch.manual_seed(seed)`` without touching the caller's CPU RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
