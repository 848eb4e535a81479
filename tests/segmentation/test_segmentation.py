"""Prompts, IoU, dataset readers and prompted evaluation on generated images with known shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import jaccard_score

from cortexalign.errors import InputError
from cortexalign.segmentation import (
    SegmentationSample,
    box_prompt,
    decode_rle,
    evaluate_segmentation,
    mask_iou,
    mean_iou,
    point_prompt,
    polygons_to_mask,
    read_coco,
    read_mask_folder,
)

H, W = 48, 64
RECT = (slice(10, 30), slice(5, 45))  # 20 x 40



def shapes() -> tuple[np.ndarray, np.ndarray]:
    """An image with a red rectangle and a blue disk; instance masks (2, H, W)."""
    rect = np.zeros((H, W), bool)
    rect[RECT] = True
    yy, xx = np.mgrid[:H, :W]
    disk = (yy - 36) ** 2 + (xx - 52) ** 2 <= 8 ** 2
    disk &= ~rect
    img = np.full((H, W, 3), 30, np.uint8)
    img[rect] = (220, 20, 20)
    img[disk] = (20, 20, 220)
    return img, np.stack([rect, disk])


def brute_force_depth(mask_hw: np.ndarray) -> np.ndarray:
    """Distance of each mask pixel to the nearest pixel outside the mask or the image (loops)."""
    padded = np.pad(mask_hw, 1)
    out_r, out_c = np.nonzero(~padded)
    depth = np.zeros(mask_hw.shape)
    for r, c in zip(*np.nonzero(mask_hw), strict=True):
        depth[r, c] = np.sqrt(((out_r - (r + 1)) ** 2 + (out_c - (c + 1)) ** 2).min())
    return depth


def test_point_prompt_is_farthest_from_boundary():
    _, masks = shapes()
    for mask_hw in masks:
        x, y = point_prompt(mask_hw).astype(int)
        depth = brute_force_depth(mask_hw)
        assert mask_hw[y, x] and depth[y, x] == depth.max()


def test_box_prompt_tight_and_jittered():
    _, masks = shapes()
    np.testing.assert_array_equal(box_prompt(masks[0]), [5, 10, 45, 30])
    a = box_prompt(masks[0], jitter=0.1, rng=np.random.default_rng(1))
    b = box_prompt(masks[0], jitter=0.1, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, [5, 10, 45, 30])
    huge = box_prompt(masks[0], jitter=5.0, rng=np.random.default_rng(2))
    assert 0 <= huge[0] < huge[2] <= W and 0 <= huge[1] < huge[3] <= H


def test_mask_iou_matches_sklearn_and_properties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.random((2, 12, 9)) < 0.4
        assert mask_iou(a, b) == pytest.approx(jaccard_score(b.ravel(), a.ravel()))
        assert mask_iou(a, b) == mask_iou(b, a)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, ~a) == 0.0
    assert mean_iou([a, a], [a, ~a]) == 0.5


def test_rle_decoding_matches_pycocotools():
    mask_util = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed")
    rng = np.random.default_rng(1)
    for shape in [(5, 7), (30, 41)]:
        mask = np.asfortranarray(rng.random(shape) < 0.3, dtype=np.uint8)
        rle = mask_util.encode(mask)
        np.testing.assert_array_equal(decode_rle(rle["counts"].decode(), rle["size"]), mask)
        np.testing.assert_array_equal(decode_rle(rle["counts"], rle["size"]), mask)
    # uncompressed counts: 2 background, 3 foreground, 1 background in column-major order
    np.testing.assert_array_equal(decode_rle([2, 3, 1], [3, 2]),
                                  np.array([[0, 1], [0, 1], [1, 0]], bool))


def test_polygon_of_a_rectangle():
    # COCO polygons run along pixel edges: pixels 5..44 x 10..29 lie inside (5, 10)-(45, 30)
    mask = polygons_to_mask([[5, 10, 45, 10, 45, 30, 5, 30]], (H, W))
    np.testing.assert_array_equal(mask, shapes()[1][0])


def test_polygons_match_the_coco_api(tmp_path):
    from pycocotools.coco import COCO

    rng = np.random.default_rng(0)
    anns = []
    for k in range(12):
        n = int(rng.integers(3, 9))
        polys = [rng.uniform(0, [W, H], (n, 2)).ravel().round(1).tolist()
                 for _ in range(1 + k % 2)]  # one or two polygons per instance
        anns.append({"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": polys,
                     "iscrowd": 0, "area": 1.0, "bbox": [0, 0, 1, 1]})
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "height": H,
                                            "width": W}], "annotations": anns,
                                "categories": [{"id": 1, "name": "x"}]}))
    coco = COCO(str(path))
    for ann in anns:
        np.testing.assert_array_equal(polygons_to_mask(ann["segmentation"], (H, W)),
                                      coco.annToMask(coco.anns[ann["id"]]).astype(bool))


def _write_coco(tmp_path) -> None:
    img, masks = shapes()
    Image.fromarray(img).save(tmp_path / "a.png")
    disk_rle = {"counts": [int(c) for c in _runs(masks[1])], "size": [H, W]}
    data = {"images": [{"id": 7, "file_name": "a.png", "height": H, "width": W}],
            "annotations": [
                {"id": 1, "image_id": 7, "segmentation": [[5, 10, 45, 10, 45, 30, 5, 30]]},
                {"id": 2, "image_id": 7, "segmentation": disk_rle},
                {"id": 3, "image_id": 7, "iscrowd": 1, "segmentation": disk_rle}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))


def _runs(mask_hw: np.ndarray) -> list[int]:
    flat = mask_hw.T.ravel().astype(int)
    change = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    return list(np.diff(np.r_[0, change]))


def test_read_coco_and_folder(tmp_path):
    img, masks = shapes()
    _write_coco(tmp_path)
    [sample] = list(read_coco(tmp_path / "ann.json", tmp_path))
    assert sample.image_id == "7" and sample.instance_ids == (1, 2)  # crowd skipped
    np.testing.assert_array_equal(sample.masks_nhw, masks)
    np.testing.assert_array_equal(sample.image_hwc, img)
    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ds" / "masks").mkdir()
    Image.fromarray(img).save(tmp_path / "ds" / "images" / "a.png")
    ids = (masks[0] * 3 + masks[1] * 9).astype(np.uint8)
    Image.fromarray(ids).save(tmp_path / "ds" / "masks" / "a.png")
    [folder] = list(read_mask_folder(tmp_path / "ds"))
    assert folder.instance_ids == (3, 9)
    np.testing.assert_array_equal(folder.masks_nhw, masks)


def test_bad_datasets_are_refused(tmp_path):
    with pytest.raises(InputError, match="images/"):
        read_mask_folder(tmp_path)
    (tmp_path / "ann.json").write_text(json.dumps({"images": []}))
    with pytest.raises(InputError, match="annotations"):
        read_coco(tmp_path / "ann.json", tmp_path)
    with pytest.raises(InputError, match="runs"):
        decode_rle([1, 2], [2, 2])


class Oracle:
    """Returns the ground-truth instance that the prompt points at (mIoU must be 1)."""

    def __init__(self, masks_nhw, shift: int = 0):
        self.masks_nhw, self.shift = masks_nhw, shift

    def set_image(self, image_hwc):
        assert image_hwc.shape[:2] == self.masks_nhw.shape[1:]

    def predict(self, point=None, box=None):
        for mask_hw in self.masks_nhw:
            if point is not None and mask_hw[int(point[1]), int(point[0])] or (
                    box is not None and np.array_equal(box, box_prompt(mask_hw))):
                out = np.zeros_like(mask_hw)
                out[:, self.shift:] = mask_hw[:, :W - self.shift]
                return out
        raise AssertionError("prompt matches no instance")


@pytest.mark.parametrize("prompt", ["point", "box"])
def test_oracle_scores_one_and_shift_scores_hand_iou(prompt):
    img, masks = shapes()
    sample = SegmentationSample("a", img, masks[:1], (1,))
    assert evaluate_segmentation([sample], Oracle(masks[:1]), prompt).miou == 1.0
    k = 4  # a 20 x 40 rectangle shifted 4 px right: IoU = 20*36 / (20*44)
    result = evaluate_segmentation([sample], Oracle(masks[:1], shift=k), prompt)
    assert result.miou == pytest.approx((40 - k) / (40 + k))
    assert result.n_instances == 1 and result.prompt == prompt


def test_unknown_prompt_is_refused():
    img, masks = shapes()
    with pytest.raises(KeyError, match="point"):
        evaluate_segmentation([SegmentationSample("a", img, masks, (1, 2))], Oracle(masks),
                              "scribble")
