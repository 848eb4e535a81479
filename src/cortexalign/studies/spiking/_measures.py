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
pairs of adjacent steps. Below that bound the plug-in estimate is still biased upwards (by
several nats at 64 dimensions and 200 images), so the same estimate is also computed with the
images of the later step shuffled (``n_shuffles`` times per pair): the *shuffled-pairing floor*,
what the estimator reports for two independent representations of these sizes. The MI above
that floor is the information the steps share.
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
    floor: float = float("nan")
    matrix: list[list[float]] = field(default_factory=list)
    estimator: str = ""
    layer: str = ""
    n_images: int = 0


@torch.no_grad()
def time_step_information(model, x_nhwc: np.ndarray, layer: str, n_shuffles: int = 5,
                          seed: int = 0) -> StepInformation:
    """MI between time steps of ``layer`` of the spiking ``model`` (eval mode) on ``x_nhwc``,
    with its shuffled-pairing floor (``n_shuffles`` permutations of the images per pair)."""
    from cortexalign.compute import compute_threads
    from cortexalign.spiking import (
        extract_features,
        mutual_information,
        step_work,
        time_step_mi,
        to_input,
    )

    device = next(model.parameters()).device
    x = to_input(torch.from_numpy(x_nhwc).to(device))
    with compute_threads(step_work(model, len(x), x_nhwc.shape[1:3]) / 3):
        feats = extract_features(model, x, [layer], time_reduce="none")[layer]  # (T, s, N, D)
    per_step = feats.double().mean(2).cpu().numpy()  # (T, s, D): tokens averaged
    T, s, d = per_step.shape
    if T < 2:
        return StepInformation(float("nan"), float("nan"), [], "one time step: no MI", layer, s)
    if 2 * d < s:
        opts, how = {}, f"gaussian, plug-in covariance ({2 * d} dimensions per pair < {s} images)"
    else:
        opts, how = {"shrinkage": "ledoit_wolf"}, (
            f"gaussian with Ledoit-Wolf shrinkage ({2 * d} dimensions per pair >= {s} images: "
            "the plug-in estimate is refused there; shrinkage is biased towards 0)")
    mi = time_step_mi(per_step, "gaussian", **opts)
    adjacent = float(np.mean([mi[t, t + 1] for t in range(T - 1)]))
    rng = np.random.default_rng(seed)
    floor = float(np.mean([mutual_information(per_step[t], per_step[t + 1][rng.permutation(s)],
                                              "gaussian", **opts)
                           for t in range(T - 1) for _ in range(n_shuffles)]))
    return StepInformation(adjacent, floor, mi.tolist(), how, layer, s)
