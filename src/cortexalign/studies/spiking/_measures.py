"""The time-step mutual information of a trained spiking model (TDFormer's analysis).

Energy and firing rates are measured by ``train_snn`` itself after training (``training`` rows
of kinds ``energy`` and ``firing_rate``, on ``plan.n_measure`` held-out images): ``E = 4.6 pJ x
MACs + 0.9 pJ x SOPs`` per image in the Spikformer convention that QKFormer, SpiLiFormer and
TDFormer follow, the real-valued first convolution counted once rather than at every time step
(``spiking.energy``). The ANN's layers all see real values: its energy is 4.6 pJ x the MACs of
its convolutions and linear layers. For neither are the products inside attention counted.

MI: the Gaussian mutual information between the ``plan.mi_layer`` representations of every
pair of time steps on the same held-out images, each image's output averaged over tokens (D
units per step). The plug-in Gaussian estimate needs fewer dimensions than samples (``2 D <
s``, the guard of ``spiking.information``); where that fails the Ledoit-Wolf shrinkage
estimate is used instead, and the record says which. The summary value is the mean MI over
pairs of adjacent steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["StepInformation", "time_step_information"]


@dataclass
class StepInformation:
    """The (T, T) time-step MI matrix of one model, its adjacent-step mean and the estimator."""

    adjacent: float
    matrix: list[list[float]] = field(default_factory=list)
    estimator: str = ""
    layer: str = ""
    n_images: int = 0


@torch.no_grad()
def time_step_information(model, x_nhwc: np.ndarray, layer: str) -> StepInformation:
    """MI between time steps of ``layer`` of the spiking ``model`` (eval mode) on ``x_nhwc``."""
    from cortexalign.compute import compute_threads
    from cortexalign.spiking import extract_features, step_work, time_step_mi, to_input

    device = next(model.parameters()).device
    x = to_input(torch.from_numpy(x_nhwc).to(device))
    with compute_threads(step_work(model, len(x), x_nhwc.shape[1:3]) / 3):
        feats = extract_features(model, x, [layer], time_reduce="none")[layer]  # (T, s, N, D)
    per_step = feats.double().mean(2).cpu().numpy()  # (T, s, D): tokens averaged
    T, s, d = per_step.shape
    if T < 2:
        return StepInformation(float("nan"), [], "one time step: no MI", layer, s)
    if 2 * d < s:
        opts, how = {}, f"gaussian, plug-in covariance ({2 * d} dimensions per pair < {s} images)"
    else:
        opts, how = {"shrinkage": "ledoit_wolf"}, (
            f"gaussian with Ledoit-Wolf shrinkage ({2 * d} dimensions per pair >= {s} images: "
            "the plug-in estimate is refused there; shrinkage is biased towards 0)")
    mi = time_step_mi(per_step, "gaussian", **opts)
    adjacent = float(np.mean([mi[t, t + 1] for t in range(T - 1)]))
    return StepInformation(adjacent, mi.tolist(), how, layer, s)
