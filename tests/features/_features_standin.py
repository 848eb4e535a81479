"""A tiny stand-in that follows the ModelAdapter contract of ``cortexalign.models``.

It has a conv layer, a strided conv layer, a token layer with one prefix (CLS) token and a
vector head, so every layout of the contract ((b,c,h,w), (b,t,d), (b,d)) is exercised.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cortexalign.stimuli import StimulusSet


def make_stimuli(n: int = 7, seed: int = 0, size: int = 10) -> StimulusSet:
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 200, size=(n, size, size, 3), dtype=np.uint8)
    return StimulusSet.from_arrays(imgs, ids=[f"img{k}" for k in range(n)], name=f"rand{seed}")


@dataclass(frozen=True)
class TinyPreprocess:
    size: int = 12

    def __call__(self, images: list[np.ndarray]) -> torch.Tensor:
        x_bhwc = torch.from_numpy(np.stack(images)).float() / 255.0
        x_bchw = x_bhwc.permute(0, 3, 1, 2)
        if x_bchw.shape[1] == 1:
            x_bchw = x_bchw.expand(-1, 3, -1, -1)
        return nn.functional.interpolate(x_bchw, size=(self.size, self.size), mode="bilinear",
                                         align_corners=False).contiguous()

    def key(self) -> str:
        return f"tiny(size={self.size},bilinear,/255)"


class TinyNet(nn.Module):
    def __init__(self, nan_above: float | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.cls = nn.Parameter(torch.randn(1, 1, 6))
        self.proj = nn.Linear(6, 8)
        self.head = nn.Linear(8, 5)
        self.drop = nn.Dropout(0.5)  # makes train/eval mode visible in the outputs
        self.nan_above = nan_above

    def forward_all(self, x_bchw: torch.Tensor) -> dict[str, torch.Tensor]:
        c1 = torch.relu(self.conv1(x_bchw))
        c2 = torch.relu(self.conv2(self.drop(c1)))
        t_btd = c2.flatten(2).transpose(1, 2)
        t_btd = self.proj(torch.cat([self.cls.expand(len(t_btd), -1, -1), t_btd], dim=1))
        if self.nan_above is not None:  # poison the images whose mean brightness is high
            bad_b = x_bchw.mean(dim=(1, 2, 3)) > self.nan_above
            t_btd = torch.where(bad_b[:, None, None], torch.nan, t_btd)
        head_bd = self.head(t_btd[:, 1:].mean(dim=1))
        return {"conv1": c1, "conv2": c2, "tokens": t_btd, "head": head_bd}


class TinyAdapter:
    """Counts forward calls so tests can prove the cache skips the model."""

    num_prefix_tokens = 1

    def __init__(self, seed: int = 0, model_id: str = "test:tiny", nan_above: float | None = None,
                 size: int = 12):
        torch.manual_seed(seed)
        self.module = TinyNet(nan_above).eval()
        self.name = "tiny"
        self.model_id = model_id
        self.preprocess = TinyPreprocess(size)
        self.device = torch.device("cpu")
        h = hashlib.sha256()
        for k, v in sorted(self.module.state_dict().items()):
            h.update(k.encode() + v.numpy().tobytes())
        self.weights_digest = h.hexdigest()
        self.calls = 0

    def layers(self) -> list[str]:
        return ["conv1", "conv2", "tokens", "head"]

    def forward_layers(self, x_bchw: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        self.calls += 1
        out = self.module.forward_all(x_bchw)
        return {k: out[k] for k in layers}


def kill_when_ready(script: str, *args: str) -> None:
    """Run ``script`` in a child Python, wait for it to print READY (it is then mid-write), and
    SIGKILL it: what a run killed during a cache write leaves behind."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
