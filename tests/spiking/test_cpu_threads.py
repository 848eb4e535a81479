"""Small spiking models train and extract on one CPU thread (``cortexalign.compute``): with
torch's default pool on a busy two-core machine one ``hst_tiny`` step took 7-11 s of CPU
instead of 0.3 s, and an untrained control's batch-norm calibration 99 s instead of ~5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexalign.spiking import TrainConfig, TrainStep, train_snn


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.delenv("CORTEXALIGN_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_training_steps_of_a_tiny_model_use_one_thread(tmp_path, two_threads, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(16, 16, 16, 3)).astype(np.uint8)
    y = np.arange(16) % 2
    np.savez(tmp_path / "d.npz", train_images=x, train_labels=y, test_images=x[:4],
             test_labels=y[:4])
    seen = []
    real = TrainStep.__call__

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TrainStep, "__call__", spy)
    train_snn(TrainConfig(data=tmp_path / "d.npz", checkpoint_dir=tmp_path / "c",
                          model="hst_tiny", batch_size=8, epochs=1, progress=False))
    assert seen == [1, 1]
    assert torch.get_num_threads() == 2  # restored


def test_extraction_and_calibration_of_a_tiny_model_use_one_thread(two_threads, monkeypatch):
    from cortexalign.features import extract_features
    from cortexalign.models import load_model
    from cortexalign.models._spiking import SpikingAdapter
    from cortexalign.stimuli import StimulusSet

    seen = {}
    for name in ("calibrate", "_forward_layers"):
        real = getattr(SpikingAdapter, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            seen.setdefault(_name, []).append(torch.get_num_threads())
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(SpikingAdapter, name, spy)
    adapter = load_model("snn:hst_tiny", untrained=True, img_size=16, device="cpu")
    images = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3)).astype(np.uint8)
    extract_features(adapter, StimulusSet.from_arrays(images), ["stage3"], batch_size=3,
                     progress=False)
    assert seen["calibrate"] == [1] and set(seen["_forward_layers"]) == {1}
    assert torch.get_num_threads() == 2
