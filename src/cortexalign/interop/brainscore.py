"""A cortexalign model as a Brain-Score ``BrainModel``, to submit or to score with
brainscore-vision's benchmarks next to the leaderboard's models.

Brain-Score's interface (``brainscore_vision.model_interface.BrainModel``): ``identifier``,
``visual_degrees()``, ``start_recording(recording_target, time_bins)``, ``look_at(stimuli,
number_of_trials)`` returning a ``(presentation, neuroid, time_bin)`` assembly of the recorded
region, and ``start_task`` for behavioural benchmarks. :class:`BrainScoreModel` maps regions
(``V1``, ``V2``, ``V4``, ``IT``) to layers of any cortexalign model, runs the model's own
preprocessing through the one extraction path (``extract_features``), and pools each layer as
``pooling`` says (Brain-Score's model-tools flattens; ``pooling="flatten"`` does the same).
Behavioural tasks are not offered: ``start_task`` says so. The class duck-types the interface
(brainscore-vision requires numpy<2 and scikit-learn<1.6 and cannot be installed beside
cortexalign's pins), so it works wherever Brain-Score calls those methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cortexalign.errors import InputError

__all__ = ["BrainScoreModel", "BRAIN_REGIONS"]

#: the recording targets Brain-Score's neural benchmarks ask for
BRAIN_REGIONS = ("V1", "V2", "V4", "IT")


class BrainScoreModel:
    """Expose a cortexalign model through Brain-Score's ``BrainModel`` methods.

    Parameters
    ----------
    model : a registered model name (``"timm:resnet50"``) or a loaded ``ModelAdapter``.
    layers : region -> layer, e.g. ``{"V4": "layer3", "IT": "layer4"}`` (layers from
        ``model.layers()``; chosen by the user or by a cortexalign run's best layers).
    identifier : the model's name on Brain-Score (default: the model id).
    pooling : how a layer is reduced per image (``flatten`` as model-tools, or ``mean``...).
    visual_degrees : the field of view the model's input spans (Brain-Score's default: 8).
    model_kwargs : passed to ``load_model`` when ``model`` is a name (``untrained``, ``weights``).
    """

    def __init__(self, model: Any, layers: Mapping[str, str], *, identifier: str | None = None,
                 pooling: str = "flatten", visual_degrees: float = 8, batch_size: int = 32,
                 device: str = "auto", **model_kwargs: Any) -> None:
        from cortexalign.features import POOLINGS
        from cortexalign.models import load_model

        self._adapter = (load_model(model, device=device, **model_kwargs) if isinstance(model, str)
                         else model)
        available = list(self._adapter.layers())
        if not layers:
            raise InputError("layers", "a mapping region -> layer, e.g. {'IT': 'layer4'}",
                             repr(layers), f"choose from the layers {available[:8]}...")
        for region, layer in layers.items():
            if region not in BRAIN_REGIONS:
                raise InputError(f"layers[{region!r}]", f"a Brain-Score region {BRAIN_REGIONS}",
                                 repr(region), "name the region as Brain-Score's benchmarks do")
            if layer not in available:
                from cortexalign.errors import close_matches

                raise InputError(f"layers[{region!r}]", "a layer of the model",
                                 repr(layer), f"did you mean {close_matches(layer, available)}? "
                                 "(`cortexalign layers MODEL` lists them)")
        if pooling not in POOLINGS:
            raise InputError("pooling", f"one of {sorted(POOLINGS)}", repr(pooling),
                             "pooling='flatten' is what Brain-Score's model-tools does")
        self.layers = dict(layers)
        self._identifier = identifier or str(getattr(self._adapter, "model_id", model))
        self._pooling, self._degrees, self._batch = pooling, visual_degrees, int(batch_size)
        self._region: str | None = None
        self._time_bins: list[tuple[float, float]] = [(70.0, 170.0)]

    @property
    def identifier(self) -> str:
        """The model's name on Brain-Score."""
        return self._identifier

    def visual_degrees(self) -> float:
        """Degrees of visual angle the model's input spans."""
        return self._degrees

    def start_recording(self, recording_target: str,
                        time_bins: Sequence[tuple[float, float]] | None = None) -> None:
        """Record ``recording_target`` (a region of ``layers``) in the next ``look_at``.

        A feed-forward model has one response per image: every time bin gets the same values.
        """
        if recording_target not in self.layers:
            raise InputError("recording_target", f"a region this model maps: {sorted(self.layers)}",
                             repr(recording_target), "add it to layers= when building the model")
        self._region = recording_target
        if time_bins is not None:
            self._time_bins = [(float(a), float(b)) for a, b in time_bins]

    def start_task(self, task: str, fitting_stimuli: Any = None) -> None:
        """Behavioural tasks are not offered: cortexalign exports the neural interface only."""
        raise InputError("task", "a neural recording (start_recording)", repr(task),
                         "score behavioural benchmarks with the model's own Brain-Score wrapper")

    def _stimuli(self, stimuli: Any):
        from cortexalign.stimuli import StimulusSet, read_image

        if "stimulus_id" not in getattr(stimuli, "columns", ()):
            raise InputError("stimuli", "a Brain-Score StimulusSet (a table with a 'stimulus_id' "
                             "column and get_stimulus(stimulus_id) -> image path)",
                             type(stimuli).__name__, "pass the benchmark's stimulus set")
        ids = [str(i) for i in stimuli["stimulus_id"]]
        images = [read_image(Path(stimuli.get_stimulus(i))) for i in stimuli["stimulus_id"]]
        return StimulusSet.from_arrays(images, ids, name="brainscore-stimuli")

    def look_at(self, stimuli: Any, number_of_trials: int = 1) -> xr.DataArray:
        """Responses of the recorded region to ``stimuli``: ``(presentation, neuroid, time_bin)``
        with the stimulus set's columns on ``presentation`` and ``neuroid_id``, ``layer`` and
        ``region`` on ``neuroid``. The model is deterministic: ``number_of_trials`` is ignored."""
        from cortexalign.features import extract_features

        if self._region is None:
            raise InputError("start_recording", "a call before look_at", "none",
                             "call start_recording('IT', time_bins=[(70, 170)]) first")
        layer = self.layers[self._region]
        stim = self._stimuli(stimuli)
        feats = extract_features(self._adapter, stim, [layer], pooling=self._pooling,
                                 batch_size=self._batch, progress=False)[layer]
        values = np.asarray(feats.values, dtype=np.float32).reshape(len(stim), -1)
        n_bins = len(self._time_bins)
        coords: dict[str, Any] = {
            "stimulus_id": ("presentation", list(stim.ids)),
            "neuroid_id": ("neuroid", [f"{layer}.{k}" for k in range(values.shape[1])]),
            "layer": ("neuroid", [layer] * values.shape[1]),
            "region": ("neuroid", [self._region] * values.shape[1]),
            "time_bin_start": ("time_bin", [a for a, _ in self._time_bins]),
            "time_bin_end": ("time_bin", [b for _, b in self._time_bins])}
        for col in stimuli.columns:
            if col != "stimulus_id":
                coords[col] = ("presentation", list(stimuli[col]))
        data = np.repeat(values[:, :, None], n_bins, axis=2)
        return xr.DataArray(data, dims=("presentation", "neuroid", "time_bin"), coords=coords,
                            attrs={"model": self.identifier, "pooling": self._pooling})
