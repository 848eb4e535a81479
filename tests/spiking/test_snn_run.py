"""End to end through `cortexalign run`: trained (a checkpoint) and untrained (batch-norm
calibrated) spiking transformers scored against the 92-object RDMs and an Allen-layout target."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.results import ResultsStore
from cortexalign.spiking import create_snn
from cortexalign.spiking._checkpoint import save_checkpoint
from cortexalign.spiking.calibration import calibrate_batchnorm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "neural"))
from allen_nwb_files import CUX2, _ophys_file  # noqa: E402

LAYERS = ["stage1.embed", "stage3"]
N_IMAGES, SIDE, REPS, N_CELLS = 24, 32, 3, 6


def _allen(folder: Path) -> tuple[Path, np.ndarray]:
    """One two-photon experiment in the AllenSDK cache layout: 24 natural-scene-like images,
    each shown 3 times, 6 cells with image-driven responses plus trial noise."""
    rng = np.random.default_rng(0)
    images = np.clip(128 + 40 * (rng.normal(size=(SIDE, SIDE))
                                 + rng.normal(size=(N_IMAGES, SIDE, SIDE))), 0, 255).astype(np.uint8)
    frames = rng.permutation(np.concatenate([np.repeat(np.arange(N_IMAGES), REPS), [-1, -1]]))
    tuning = rng.normal(size=(N_CELLS, N_IMAGES))
    amp_nt = 1.0 + np.where(frames >= 0, tuning[:, frames], 0.0) + 0.3 * rng.normal(
        size=(N_CELLS, len(frames)))
    root = folder / "ophys_experiment_data"
    root.mkdir(parents=True)
    _ophys_file(root / "500.nwb", frames, amp_nt, np.arange(1000, 1000 + N_CELLS),
                np.zeros(N_CELLS), images, CUX2)
    return folder, images


def _checkpoint(folder: Path, allen_images: np.ndarray) -> Path:
    """An hst_tiny checkpoint, in `cortexalign train-snn`'s format, whose batch-norm statistics
    were estimated on images of both kinds (as a trained model's are, on its training images):
    it is scored with the statistics it carries."""
    from cortexalign.models import load_model
    from cortexalign.stimuli import load_stimuli

    pre = load_model("snn:hst_tiny", untrained=True, img_size=16, device="cpu").preprocess
    k92 = list(load_stimuli("kriegeskorte92").images(range(0, 92, 2)))
    gray = [np.repeat(im[..., None], 3, -1) for im in allen_images]
    torch.manual_seed(1)
    model = create_snn("hst_tiny")
    calibrate_batchnorm(model, [torch.cat([pre(k92), pre(gray)])])
    return save_checkpoint(folder, 1, model, None, {"note": "test checkpoint"})


def _models(ckpt: Path, untrained: str) -> list[dict]:
    """The checkpoint and one untrained control (hst for the RDMs, tdformer for Allen)."""
    return [
        {"name": "snn:hst_tiny", "weights": str(ckpt), "label": "hst (checkpoint)", "layers": LAYERS,
         "kwargs": {"img_size": 16}},
        {"name": f"snn:{untrained}_tiny", "untrained": True, "label": f"{untrained} (untrained)",
         "layers": LAYERS, "kwargs": {"img_size": 16}},
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("snn_run")
    allen, allen_images = _allen(tmp / "allen_cache")
    ckpt = _checkpoint(tmp / "ckpt", allen_images)
    configs = {
        "k92": {"name": "snn_k92", "stimuli": {"source": "kriegeskorte92"}, "models": _models(ckpt, "hst"),
                "neural": [{"source": "kriegeskorte92.human_IT", "label": "human IT"}],
                "metrics": [{"name": "rsa", "options": {"rdm_method": "correlation",
                                                        "compare": "spearman"}}],
                "n_bootstrap": 0, "batch_size": 46},
        "allen": {"name": "snn_allen",
                  "stimuli": {"source": "allen.natural_scenes", "options": {"path": str(allen)}},
                  "models": _models(ckpt, "tdformer"),
                  "neural": [{"source": "allen.ophys_natural_scenes", "label": "allen",
                              "options": {"path": str(allen)}}],
                  "metrics": [{"name": "rsa", "options": {"n_splits": 3}}],
                  "n_bootstrap": 0, "batch_size": N_IMAGES},
    }
    frames = {}
    for key, cfg in configs.items():
        path = tmp / f"{key}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp / key), "--quiet"])
        assert result.exit_code == 0, result.output
        frames[key] = ResultsStore(tmp / key / "results.duckdb", read_only=True).scores_frame()
    return frames


@pytest.mark.parametrize("key", ["k92", "allen"])
def test_every_spiking_model_and_layer_is_scored(runs, key):
    frame = runs[key]
    control = "hst (untrained)" if key == "k92" else "tdformer (untrained)"
    assert set(frame["model"]) == {"hst (checkpoint)", control}
    for _, sub in frame.groupby("model"):
        assert sorted(set(sub["layer"])) == sorted(LAYERS)
    assert np.isfinite(frame["value"]).all()
    assert (frame["value"].abs() <= 1).all()


def test_untrained_controls_say_they_were_calibrated(runs):
    ids = {}
    for frame in runs.values():
        ids.update(zip(frame["model"], frame["model_id"], strict=False))
    assert "bn_calibration='stimuli'" in ids["hst (untrained)"]
    assert "bn_calibration='stimuli'" in ids["tdformer (untrained)"]
    assert "bn_calibration" not in ids["hst (checkpoint)"]
