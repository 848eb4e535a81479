"""Batch-norm calibration: how an untrained spiking network becomes a scorable control.

At initialisation every ``BatchNorm`` holds running mean 0 and variance 1, while the
pre-activations of a freshly initialised convolution have a variance far below 1; in eval
mode the membranes then almost never reach threshold (a firing rate of ~4e-4 for ``hst_tiny``
on the 92 object images) and every image gives nearly the same, mostly silent, features.

``calibrate_batchnorm`` re-estimates the running statistics of every batch-norm layer from
the stimuli themselves (the standard BN recalibration of Ioffe & Szegedy 2015, sec. 3.1,
and of post-hoc recalibration for SNNs): the running statistics are reset, then the network
runs over the stimuli in train mode without gradients, with ``momentum=None`` so each layer
keeps the cumulative average of the batch means and (unbiased) variances, layer after layer
in forward order. Weights are untouched; only ``running_mean``, ``running_var`` and
``num_batches_tracked`` change. The features of a calibrated model depend on the stimulus set
it was calibrated on, which is why the model id of such a control says
``bn_calibration='stimuli'`` and extraction recalibrates for each stimulus set.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from cortexalign.spiking.neurons import reset_states

__all__ = ["BN_CALIBRATIONS", "calibrate_batchnorm", "batchnorm_layers"]

#: ``"stimuli"``: running statistics re-estimated on the stimuli before extraction;
#: ``"none"``: the statistics the weights came with (initial values for an untrained model).
BN_CALIBRATIONS = ("stimuli", "none")


_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """Every batch-norm layer of ``model``, in registration order."""
    return [m for m in model.modules() if isinstance(m, _BN)]


def calibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every batch-norm layer's running statistics on ``batches``.

    Parameters
    ----------
    model : a network called as ``model(x)``; its spiking neurons are reset before each batch.
    batches : input batches (e.g. preprocessed stimuli), each one forward pass.

    Returns
    -------
    int, the number of samples seen. The model is left in eval mode and the layers'
    ``momentum`` is restored.
    """
    layers = batchnorm_layers(model)
    saved = [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the calibration batches
    n = 0
    model.eval()
    for bn in layers:
        bn.train()
    try:
        with torch.no_grad():
            for x in batches:
                reset_states(model)
                model(x)
                n += int(x.shape[0])
    finally:
        for bn, m in zip(layers, saved, strict=True):
            bn.momentum = m
        model.eval()
        reset_states(model)
    return n
