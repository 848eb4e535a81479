"""Spiking transformers (``cortexalign.spiking``) as models of the alignment pipeline.

``snn:<name>`` loads one of ``cortexalign.spiking.SNN_MODELS`` (``hst_4_384``,
``spiliformer_4_384``, ``tdformer_10_768``, ``*_tiny``...). Layers are the stage embeddings and
transformer blocks; each layer's output is averaged over the time steps, so a spiking model's
features are firing rates with the same (b, c, h, w) / (b, n, d) layouts as an ANN's and every
metric applies unchanged. No pretrained weights are published for these models: train one with
``cortexalign train-snn`` and pass its checkpoint as ``weights``, or use ``untrained=True``.

Untrained controls: with batch-norm statistics at their initial values an untrained spiking
network is almost silent (every image gives the same features), so by default
(``bn_calibration="stimuli"`` when ``untrained=True``) its batch-norm running statistics are
re-estimated on the stimuli before each extraction (``cortexalign.spiking.calibration``); the
model id then carries ``[bn_calibration='stimuli']``. Pass ``bn_calibration="none"`` for the raw
initialisation. A trained checkpoint keeps its own statistics unless ``bn_calibration="stimuli"``.

An image that produces no spike in a layer gives an all-zero feature vector there; extraction
warns (``SilentStimulusWarning``) and correlation/cosine RDMs treat it as uncorrelated with
every other image (see ``cortexalign.metrics``).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from cortexalign.errors import InputError
from cortexalign.models._base import ModelAdapter
from cortexalign.models._hooks import seeded
from cortexalign.models._preprocess import Preprocess
from cortexalign.models._registry import MODELS, LoadSpec, options_tag

__all__ = ["SpikingAdapter", "SilentStimulusWarning"]

_CIFAR = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_CALIBRATION_BATCH = 256


class SilentStimulusWarning(UserWarning):
    """Some images produce no spike at all in a layer (all-zero features there)."""


class SpikingAdapter(ModelAdapter):
    """A spiking transformer whose layer outputs are averaged over time steps.

    ``bn_calibration``: ``"stimuli"`` re-estimates the batch-norm statistics on each stimulus set
    before extraction (``calibrate``, called by ``cortexalign.features``); ``"none"`` keeps them.
    Its activations are the ``spiking_time_averaged`` feature kind of ``cortexalign.features``
    (``activations_kind``).
    """

    #: The feature kind that extracts this model's activations (``features.resolve_kind``).
    activations_kind = "spiking_time_averaged"

    def __init__(self, *args, bn_calibration: str = "none", **kwargs):
        super().__init__(*args, **kwargs)
        self.bn_calibration = bn_calibration
        self.calibrated_on: str | None = None  # the stimulus set the statistics come from

    def calibrate(self, stimuli, batch_size: int = 64) -> None:
        """Re-estimate batch-norm statistics on ``stimuli`` (a ``StimulusSet``) when
        ``bn_calibration == "stimuli"``; a no-op otherwise or when already done for this set."""
        from cortexalign.spiking.calibration import calibrate_batchnorm

        if self.bn_calibration != "stimuli":
            return
        key = f"{stimuli.name}:{len(stimuli)}:{hash(tuple(stimuli.ids))}"
        if self.calibrated_on == key:
            return
        _ = self.weights_digest  # fingerprint the weights as built, before the statistics move
        step = max(int(batch_size), _CALIBRATION_BATCH)  # one batch for up to 256 stimuli

        def batches():
            for start in range(0, len(stimuli), step):
                idx = range(start, min(start + step, len(stimuli)))
                yield self.preprocess(list(stimuli.images(idx))).to(self.device)

        calibrate_batchnorm(self.module, batches())
        self.calibrated_on = key

    def _forward_layers(self, x_bchw: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        from cortexalign.spiking.features import extract_features
        from cortexalign.spiking.neurons import reset_states

        if self.bn_calibration == "stimuli" and self.calibrated_on is None:
            warnings.warn(f"{self.model_id}: batch-norm statistics not calibrated yet (an untrained "
                          "network is then almost silent); call adapter.calibrate(stimuli) first, "
                          "as cortexalign.extract_features does", UserWarning, stacklevel=3)
        reset_states(self.module)  # every batch starts from resting membranes
        out = extract_features(self.module, x_bchw, names, time_reduce="mean",
                               grad=torch.is_grad_enabled())
        reset_states(self.module)
        for name, y in out.items():
            silent = int((y.flatten(1).amax(dim=1) <= 0).sum())
            if silent:
                warnings.warn(f"{self.model_id}: {silent} of {y.shape[0]} images in a batch produce "
                              f"no spike in layer {name!r} (all-zero features); correlation and "
                              "cosine RDMs treat such an image as uncorrelated with every other",
                              SilentStimulusWarning, stacklevel=2)
        return out


@MODELS.register_prefix(
    "snn",
    description="Spiking transformers: QKFormer-style baseline (hst), SpiLiFormer, TDFormer",
    layers="stage{k}.embed, stage{k}.block{j} (time-averaged firing)",
    weights="a checkpoint from `cortexalign train-snn` (weights=PATH), or untrained=True",
    tiny={"name": "snn:spiliformer_tiny", "untrained": True, "img_size": 16},
)
def build_snn(spec: LoadSpec, img_size: int | None = None, bn_calibration: str | None = None,
              **kwargs: Any) -> SpikingAdapter:
    """Build ``snn:<name>``; ``kwargs`` override ``HSTConfig`` fields (e.g. ``time_steps=4``).

    ``bn_calibration``: ``"stimuli"`` (default for ``untrained=True``) or ``"none"`` (default
    for a checkpoint); see the module docstring.
    """
    from cortexalign.spiking import SNN_MODELS, create_snn, load_weights
    from cortexalign.spiking.calibration import BN_CALIBRATIONS
    from cortexalign.spiking.features import layer_names

    if bn_calibration is None:
        bn_calibration = "stimuli" if spec.source == "untrained" else "none"
    if bn_calibration not in BN_CALIBRATIONS:
        raise InputError("bn_calibration", " or ".join(map(repr, BN_CALIBRATIONS)),
                         repr(bn_calibration), "pass bn_calibration='stimuli' (re-estimate the "
                         "batch-norm statistics on the stimuli) or 'none'")

    if spec.arch not in SNN_MODELS:
        SNN_MODELS.get(spec.arch)  # raises with the close matches
    if spec.source == "default":
        raise InputError("weights", "a checkpoint written by `cortexalign train-snn`, or "
                         "untrained=True", f"no weights for {spec.name!r} (none are published)",
                         "train one with `cortexalign train-snn CONFIG` and pass weights=PATH")
    with seeded(spec.seed):
        module = create_snn(spec.arch, **kwargs)
    if spec.source == "file":
        load_weights(module, spec.weights)
    size = img_size or (32 if module.config.num_classes <= 100 else 224)
    mean, std = _CIFAR if size <= 64 else _IMAGENET
    preprocess = Preprocess(size=(size, size), mean=mean, std=std, resize="stretch")
    tagged = dict(kwargs, **({"bn_calibration": "stimuli"} if bn_calibration == "stimuli" else {}))
    opts = options_tag(tagged)
    layers = layer_names(module)
    return SpikingAdapter(spec.name, f"{spec.name}{opts}{spec.variant()}", module, preprocess,
                          spec.device, layer_paths={n: n for n in layers},
                          bn_calibration=bn_calibration)
