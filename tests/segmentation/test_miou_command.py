"""mIoU as a command (``cortexalign miou``) and as a config entry (``segmentation:``), on the
jalil2026 simulator's COCO set, against an independent computation: segment-anything's own
``Sam`` and ``SamPredictor`` built from the same checkpoint, prompted with each annotation's COCO
box, scored with pycocotools (``COCO.annToMask``, ``mask.iou``)."""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.results import ResultsStore
from cortexalign.studies.jalil2026._scenes import write_coco

pytest.importorskip("segment_anything", reason="segment-anything not installed")
pycocotools = pytest.importorskip("pycocotools")

runner = CliRunner()
N_IMAGES, LIMIT = 4, 3


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    return write_coco(root / "coco", N_IMAGES, (48, 64), seed=3), root / "coco" / "images"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny segment-anything SAM (random weights) saved in the official layout."""
    import torch
    from test_sam_predictor import official_tiny_sam

    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth"
    torch.save(official_tiny_sam().state_dict(), path)
    return path


def reference_miou(ann_file, image_dir, ckpt, limit: int) -> tuple[float, int]:
    """segment-anything's predictor on each instance's COCO box; IoU by pycocotools."""
    import torch
    from PIL import Image
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from segment_anything import SamPredictor
    from test_sam_predictor import official_tiny_sam

    sam = official_tiny_sam()
    sam.load_state_dict(torch.load(ckpt, weights_only=True))
    predictor = SamPredictor(sam.eval())
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        gt = COCO(str(ann_file))
        ious = []
        for img_id in gt.getImgIds()[:limit]:
            info = gt.loadImgs(img_id)[0]
            predictor.set_image(np.asarray(Image.open(image_dir / info["file_name"]).convert("RGB")))
            for ann in gt.loadAnns(gt.getAnnIds(imgIds=img_id, iscrowd=False)):
                x, y, w, h = ann["bbox"]
                masks, _, _ = predictor.predict(box=np.array([x, y, x + w, y + h]),
                                                multimask_output=False)
                pred = mask_utils.encode(np.asfortranarray(masks[0].astype(np.uint8)))
                truth = mask_utils.encode(np.asfortranarray(gt.annToMask(ann)))
                ious.append(float(mask_utils.iou([pred], [truth], [0])[0, 0]))
    return float(np.mean(ious)), len(ious)


def _cards(out):
    frame = ResultsStore(out / "results.duckdb", read_only=True).frame("model_cards")
    frame["extra"] = [json.loads(e) for e in frame["extra"]]
    return frame


def test_miou_command_equals_segment_anything_and_pycocotools(coco, checkpoint, tmp_path):
    ann, images = coco
    out = tmp_path / "out"
    args = ["miou", "sam_vit_b", "--coco", str(ann), "--images", str(images), "--weights",
            str(checkpoint), "--kwarg", "tiny=true", "--limit", str(LIMIT), "--device", "cpu",
            "--out", str(out)]
    res = runner.invoke(app, args, env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    assert "mIoU" in res.output and "sam_vit_b[tiny]@file:sam_tiny.pth" in res.output
    want, n_instances = reference_miou(ann, images, checkpoint, LIMIT)
    card = _cards(out).iloc[0]
    assert card["miou"] == pytest.approx(want, abs=1e-6)
    seg = card["extra"]["segmentation"]
    assert (seg["images"], seg["instances"], seg["prompt"]) == (LIMIT, n_instances, "box")
    assert seg["heads"] == str(checkpoint) and n_instances > LIMIT
    assert f"{want:.4f}" in res.output
    # profile --out on the same model keeps the mIoU: one card with both
    res = runner.invoke(app, ["profile", "sam_vit_b", "--weights", str(checkpoint), "--kwarg",
                              "tiny=true", "--repeats", "1", "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    cards = _cards(out)
    assert len(cards) == 1 and cards["miou"][0] == card["miou"] and cards["params"][0] > 0
    assert cards["extra"][0]["segmentation"] == seg


def test_miou_command_refuses_bad_input_before_writing(coco, tmp_path):
    ann, images = coco
    out = tmp_path / "out"
    base = ["--coco", str(ann), "--images", str(images), "--untrained", "--kwarg", "tiny=true",
            "--device", "cpu", "--out", str(out)]
    res = runner.invoke(app, ["miou", "sam_vit_b", *base, "--prompt", "clicks"])
    assert res.exit_code == 2 and "--prompt" in res.output and "box" in res.output
    res = runner.invoke(app, ["miou", "pixels", *base[:5], "--out", str(out)])
    assert res.exit_code == 2 and "Segment Anything" in res.output
    res = runner.invoke(app, ["miou", "sam_vit_b", "--coco", str(ann), "--images",
                              str(tmp_path), "--untrained", "--kwarg", "tiny=true"])
    assert res.exit_code == 2 and "000000000000.png" in res.output
    assert not out.exists()


def test_untrained_heads_are_named_random(coco):
    ann, images = coco
    res = runner.invoke(app, ["miou", "mobile_sam", "--coco", str(ann), "--images", str(images),
                              "--untrained", "--kwarg", "tiny=true", "--limit", "1",
                              "--prompt", "point", "--device", "cpu"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "random" in res.output and "mobile_sam[tiny]@untrained-seed0" in res.output


def _config(ann, images, ckpt, **seg) -> dict:
    return {
        "name": "cards", "stimuli": {"source": "kriegeskorte92"},
        "models": [{"name": "sam_vit_b", "weights": str(ckpt), "kwargs": {"tiny": True},
                    "layers": ["neck"], "label": "tiny SAM"},
                   {"name": "pixels", "kwargs": {"size": 8}, "pooling": "flatten",
                    "label": "pixels"}],
        "neural": [{"source": "kriegeskorte92.human_IT", "label": "human IT"}],
        "metrics": [{"name": "rsa"}], "n_bootstrap": 0, "device": "cpu",
        "segmentation": {"coco": str(ann), "images": str(images), **seg}}


def test_config_entry_writes_every_models_card(coco, checkpoint, tmp_path):
    ann, images = coco
    cfg = tmp_path / "cards.yaml"
    cfg.write_text(yaml.safe_dump(_config(ann, images, checkpoint, limit=LIMIT,
                                          profile_repeats=1)))
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    cards = _cards(out).set_index("model_id")
    want, _ = reference_miou(ann, images, checkpoint, LIMIT)
    assert cards.loc["sam_vit_b[tiny]@file:sam_tiny.pth", "miou"] == pytest.approx(want, abs=1e-6)
    pixels = cards.loc[[m for m in cards.index if m.startswith("pixels")][0]]
    assert np.isnan(pixels["miou"]) or pixels["miou"] is None
    assert cards.loc["sam_vit_b[tiny]@file:sam_tiny.pth", "params"] > 0 == pixels["params"]
    assert (cards["latency_ms"] > 0).all()
    # a rerun resumes: nothing to redo, the cards unchanged
    res = runner.invoke(app, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    again = _cards(out).set_index("model_id")
    assert list(again["created"]) == list(cards["created"])


def test_config_entry_is_checked_before_the_run(coco, checkpoint, tmp_path):
    from cortexalign.bench import load_config
    from cortexalign.bench._config import ConfigError

    ann, images = coco
    with pytest.raises(ConfigError, match="segmentation.prompt"):
        load_config(_config(ann, images, checkpoint, prompt="clicks"))
    cfg = tmp_path / "cards.yaml"
    bad = _config(tmp_path / "none.json", images, checkpoint)
    cfg.write_text(yaml.safe_dump(bad))
    res = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code != 0 and "segmentation" in res.output and "none.json" in res.output
    assert not (tmp_path / "run").exists()
    no_sam = _config(ann, images, checkpoint)
    no_sam["models"] = no_sam["models"][1:]
    cfg.write_text(yaml.safe_dump(no_sam))
    res = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code != 0 and "Segment Anything" in res.output
    assert not (tmp_path / "run").exists()
