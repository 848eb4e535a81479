"""The brain target of a training run: its data, its stimuli, the split, and the guarded loss.

``BrainTarget.load`` reads any neural dataset the package reads (an ``RDMSet`` or responses) with
its stimuli and splits the stimuli into train and held-out *before* anything is fitted.
``AlignmentLoss`` is built from the training part alone — it never holds a held-out stimulus's
data — and refuses, with ``HeldOutLeakError``, any stimulus outside the training part. Held-out
stimuli reach only ``BrainTarget.heldout_score`` (the metric, no gradient).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from cortexalign.align.split import StimulusSplit, split_stimuli
from cortexalign.errors import InputError
from cortexalign.neural import RDMSet
from cortexalign.stimuli import StimulusSet

__all__ = ["BrainTarget", "AlignmentLoss", "HeldOutLeakError", "subset_target", "metric_of"]


class HeldOutLeakError(InputError):
    """A stimulus outside the training part reached the alignment loss."""


def subset_target(data, ids: Sequence[str]):
    """The RDMSet rows/columns or the responses of ``ids``, in that order."""
    ids = [str(i) for i in ids]
    if isinstance(data, RDMSet):
        pos = {s: k for k, s in enumerate(data.stimulus_ids)}
        idx = np.array([pos[i] for i in ids])
        return RDMSet(data.rdms[:, idx][:, :, idx], tuple(ids), data.descriptors, data.name,
                      data.citation)
    return data.sel(stimulus=ids)


def metric_of(objective: str, options: Mapping) -> tuple[str, dict]:
    """The hard metric (``cortexalign.metrics.score`` name and options) an objective trains."""
    if objective == "rsa":
        keep = {k: options[k] for k in ("rdm_method", "compare", "neural_rdm_method", "ceiling_by")
                if k in options}
        return "rsa", {"compare": "pearson", **keep}
    if objective == "cka":
        return f"cka_{options.get('kind', 'linear')}", {}
    keep = {k: options[k] for k in ("alphas", "n_folds", "inner_folds") if k in options}
    return "ridge", keep


class AlignmentLoss:
    """``-objective`` between layer features and the target, on training stimuli only.

    Parameters
    ----------
    train_target : the target restricted to the training stimuli (``subset_target``).
    objective : ``rsa``, ``cka`` or ``ridge`` (``cortexalign.metrics.OBJECTIVES``).
    options : the objective's options.
    """

    def __init__(self, train_target, objective: str, options: Mapping):
        from cortexalign.metrics import OBJECTIVES

        self.target = train_target
        self.train_ids = tuple(train_target.stimulus_ids if isinstance(train_target, RDMSet)
                               else (str(s) for s in train_target["stimulus"].values))
        self._allowed = frozenset(self.train_ids)
        self._fn = OBJECTIVES[objective]
        self.objective, self.options = objective, dict(options)

    def check_ids(self, ids: Sequence[str]) -> None:
        """Raise ``HeldOutLeakError`` unless every id is a training stimulus."""
        leaked = [i for i in ids if i not in self._allowed]
        if leaked:
            raise HeldOutLeakError("ids", "training stimuli of the split only",
                                   f"{len(leaked)} other stimuli (e.g. {leaked[:3]})",
                                   "held-out stimuli may only be scored, never trained on")

    def __call__(self, features: Mapping[str, torch.Tensor], ids: Sequence[str]) -> torch.Tensor:
        """Mean over layers of ``-objective(features[layer], target[ids])``."""
        self.check_ids(ids)
        sub = subset_target(self.target, ids)
        values = [self._fn(f.flatten(1).to(torch.float64), sub, **self.options)
                  for f in features.values()]
        return -torch.stack(values).mean()


@dataclass
class BrainTarget:
    """A neural dataset with its stimuli and its train / held-out split."""

    name: str
    data: RDMSet | xr.DataArray
    stimuli: StimulusSet
    split: StimulusSplit

    @classmethod
    def load(cls, target: str, stimuli: str | None = None, heldout_fraction: float = 0.25,
             seed: int = 0, category_key: str | None = "category") -> BrainTarget:
        """Read ``target`` (``load_neural``) and its stimuli, then split them by stimulus."""
        from cortexalign.neural import NEURAL, load_neural
        from cortexalign.stimuli import load_stimuli

        data = load_neural(target)
        if stimuli is None:
            stimuli = NEURAL.entry(target).meta.get("stimuli") if target in NEURAL else None
            if stimuli is None:
                raise InputError("stimuli", "the stimulus set of the target (a bundled name, a "
                                 "folder or an .npz)", "none", f"set stimuli: for {target!r}")
        stim = load_stimuli(stimuli)
        ids = data.stimulus_ids if isinstance(data, RDMSet) else [
            str(s) for s in data["stimulus"].values]
        missing = sorted(set(ids) - set(stim.ids))
        if missing:
            raise InputError("stimuli", f"a set holding every stimulus of {target!r}",
                             f"{len(missing)} missing (e.g. {missing[:3]})",
                             "pass the stimuli the target was recorded with")
        labels, by = None, None
        if category_key and category_key in stim.metadata:
            pos = {s: k for k, s in enumerate(stim.ids)}
            labels = np.asarray(stim.metadata[category_key])[[pos[i] for i in ids]]
            by = category_key
        split = split_stimuli(ids, labels, heldout_fraction, seed, by)
        return cls(str(target), data, stim, split)

    def with_split(self, split: StimulusSplit) -> BrainTarget:
        """The same target with ``split`` (e.g. the one a resumed run wrote)."""
        return BrainTarget(self.name, self.data, self.stimuli, split)

    def loss(self, objective: str, options: Mapping) -> AlignmentLoss:
        """The alignment loss, built from the training stimuli alone."""
        return AlignmentLoss(subset_target(self.data, self.split.train), objective, options)

    def images(self, ids: Sequence[str]) -> list[np.ndarray]:
        """The images of ``ids``."""
        return [self.stimuli.image(i) for i in ids]

    def heldout_score(self, features_sd: torch.Tensor, metric: str, options: Mapping, *,
                      part: str = "heldout", n_bootstrap: int = 0, seed: int = 0):
        """The hard metric of (s, d) features of the ``part`` stimuli (a ``Score``)."""
        from cortexalign.metrics import score

        ids = self.split.heldout if part == "heldout" else self.split.train
        return score(metric, features_sd.detach().to(torch.float64).cpu().numpy(),
                     subset_target(self.data, ids), n_bootstrap=n_bootstrap, seed=seed,
                     device="cpu", **options)
