"""Datasets of images with instance masks: COCO-style annotation files and image + mask folders.

COCO (Lin et al. 2014): ``annotations.json`` with ``images`` (``id``, ``file_name``, ``height``,
``width``) and ``annotations`` (``image_id``, ``segmentation`` as polygons, uncompressed RLE
``{"counts": [...], "size": [h, w]}`` or compressed RLE ``{"counts": "...", "size": [h, w]}``,
optional ``iscrowd``). Crowd annotations are skipped, as in SAM's evaluation. Polygons are
rasterised by pycocotools, as the COCO tools do; RLE decoding is exact.

Folder: ``root/images/<stem>.{png,jpg,jpeg}`` and ``root/masks/<stem>.png`` whose pixel values
are instance ids (0 = background; 8- or 16-bit PNG).
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cortexalign.errors import InputError
from cortexalign.stimuli import check_image

__all__ = ["SegmentationSample", "decode_rle", "polygons_to_mask", "read_coco", "check_coco",
           "read_mask_folder"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True, eq=False)
class SegmentationSample:
    """One image and its instance masks.

    Attributes
    ----------
    image_id : identifier (COCO image id or file stem).
    image_hwc : (h, w, 3) uint8 RGB image.
    masks_nhw : (n, h, w) bool, one mask per instance, none empty.
    instance_ids : (n,) ids of the instances (COCO annotation ids or mask pixel values).
    """

    image_id: str
    image_hwc: np.ndarray
    masks_nhw: np.ndarray
    instance_ids: tuple[int, ...]


def decode_rle(counts: str | Sequence[int], size: Sequence[int]) -> np.ndarray:
    """Decode a COCO run-length encoding into an (h, w) bool mask.

    Runs alternate background / foreground starting with background, in column-major order;
    a string ``counts`` is COCO's compressed form (6-bit characters offset by 48, each run
    delta-coded against the run two before it).
    """
    h, w = (int(s) for s in size)
    runs = _rle_from_string(counts) if isinstance(counts, str | bytes) else [int(c) for c in counts]
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise InputError("segmentation.counts", f"runs adding up to h * w = {h * w}",
                         f"{len(runs)} runs adding up to {sum(runs)}",
                         "check the annotation's size and counts")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape(w, h).T.copy()


def _rle_from_string(s: str | bytes) -> list[int]:
    data = s.encode() if isinstance(s, str) else s
    runs: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def polygons_to_mask(polygons: Sequence[Sequence[float]], size: Sequence[int]) -> np.ndarray:
    """Fill COCO polygons (each ``[x0, y0, x1, y1, ...]``) into an (h, w) bool mask.

    Rasterised by pycocotools (``frPyObjects``, ``merge``, ``decode``), so the mask is the one
    the COCO tools and evaluations use (PIL's fill added a pixel all round).
    """
    from pycocotools import mask as mask_utils

    h, w = (int(s) for s in size)
    polys = []
    for poly in polygons:
        xy = [float(v) for v in poly]
        if len(xy) < 6 or len(xy) % 2:
            raise InputError("segmentation", "polygons of at least 3 (x, y) points",
                             f"a list of {len(xy)} numbers", "fix or drop the annotation")
        polys.append(xy)
    if not polys:
        return np.zeros((h, w), dtype=bool)
    rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    with warnings.catch_warnings():  # pycocotools' own NumPy 2 copy= deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _annotation_mask(seg: object, h: int, w: int, ann_id: int) -> np.ndarray:
    if isinstance(seg, dict) and "counts" in seg:
        size = seg.get("size", [h, w])
        if [int(s) for s in size] != [h, w]:
            raise InputError(f"annotation {ann_id}: segmentation.size", f"[{h}, {w}]",
                             repr(size), "use the image's height and width")
        return decode_rle(seg["counts"], size)
    if isinstance(seg, list):
        return polygons_to_mask(seg, (h, w))
    raise InputError(f"annotation {ann_id}: segmentation", "polygons or an RLE dict",
                     type(seg).__name__, "fix the annotation file")


def _load_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError("image", "an existing image file", repr(str(path)),
                         "check the image folder and file names")
    with Image.open(path) as im:
        return check_image(np.asarray(im.convert("RGB")), str(path))


def _coco_index(annotation_file: str | Path) -> tuple[dict[int, dict], dict[int, list[dict]]]:
    """``images`` by id and the non-crowd annotations of each, after checking the whole file."""
    annotation_file = Path(annotation_file)
    if not annotation_file.is_file():
        raise InputError("annotation_file", "an existing COCO-style JSON file",
                         repr(str(annotation_file)), "check the path")
    try:
        data = json.loads(annotation_file.read_text())
        images = {int(im["id"]): im for im in data["images"]}
        anns = data["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InputError("annotation_file", "JSON with 'images' (id, file_name, height, width) "
                         "and 'annotations'", f"{annotation_file.name} ({err})",
                         "write the file in COCO's format") from err
    by_image: dict[int, list[dict]] = {i: [] for i in images}
    for ann in anns:
        if int(ann.get("image_id", -1)) not in by_image:
            raise InputError("annotations.image_id", "ids listed in 'images'",
                             repr(ann.get("image_id")), "fix the annotation file")
        if not ann.get("iscrowd", 0):
            by_image[int(ann["image_id"])].append(ann)
    return images, by_image


def read_coco(annotation_file: str | Path, image_dir: str | Path,
              limit: int | None = None) -> Iterator[SegmentationSample]:
    """Samples of a COCO-style annotation file, images read lazily from ``image_dir``.

    The whole file is validated (keys, image ids) before the first sample is yielded;
    ``limit``: only the first ``limit`` images of the file.
    """
    images, by_image = _coco_index(annotation_file)
    if limit is not None:
        images = dict(itertools.islice(images.items(), int(limit)))
    return _coco_samples(images, by_image, Path(image_dir))


def check_coco(annotation_file: str | Path, image_dir: str | Path,
               limit: int | None = None) -> int:
    """Check a COCO set before anything is scored: the annotation file (as ``read_coco``) and
    that every image it lists (the first ``limit``) is in ``image_dir``. Returns their count."""
    images, _ = _coco_index(annotation_file)
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError("image_dir", "the folder of the annotation file's images",
                         repr(str(image_dir)), "check the path")
    listed = list(images.values())[:limit]
    missing = [im["file_name"] for im in listed if not (image_dir / im["file_name"]).is_file()]
    if missing:
        raise InputError("image_dir", "every image the annotation file lists",
                         f"{len(missing)} of {len(listed)} missing from {str(image_dir)!r} "
                         f"(first {missing[0]!r})", "point to the folder of those file names")
    return len(listed)


def _coco_samples(images: dict, by_image: dict, image_dir: Path) -> Iterator[SegmentationSample]:
    for image_id, info in images.items():
        h, w = int(info["height"]), int(info["width"])
        image_hwc = _load_image(image_dir / info["file_name"])
        if image_hwc.shape[:2] != (h, w):
            raise InputError(f"images[{image_id}]", f"an image of {h} x {w} px",
                             f"{image_hwc.shape[0]} x {image_hwc.shape[1]} px",
                             "fix height/width in the annotation file")
        masks, ids = [], []
        for ann in by_image[image_id]:
            mask_hw = _annotation_mask(ann["segmentation"], h, w, ann.get("id", -1))
            if mask_hw.any():
                masks.append(mask_hw)
                ids.append(int(ann.get("id", len(ids))))
        masks_nhw = np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool)
        yield SegmentationSample(str(image_id), image_hwc, masks_nhw, tuple(ids))


def read_mask_folder(root: str | Path) -> Iterator[SegmentationSample]:
    """Samples of ``root/images`` with instance-id PNGs in ``root/masks`` (same file stems)."""
    root = Path(root)
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir() or not mask_dir.is_dir():
        raise InputError("root", "a folder with 'images/' and 'masks/' subfolders",
                         repr(str(root)), "put images in root/images and instance-id PNGs in "
                         "root/masks with the same file names")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    missing = [p.name for p in images if not (mask_dir / f"{p.stem}.png").is_file()]
    if missing or not images:
        raise InputError("root", "one mask PNG per image", f"no mask for {missing[:3]}"
                         if missing else "no images", "add masks/<stem>.png for every image")
    return (_folder_sample(p, mask_dir / f"{p.stem}.png") for p in images)


def _folder_sample(image_path: Path, mask_path: Path) -> SegmentationSample:
    image_hwc = _load_image(image_path)
    with Image.open(mask_path) as im:
        ids_hw = np.asarray(im)
    if ids_hw.ndim != 2 or ids_hw.shape != image_hwc.shape[:2]:
        raise InputError(str(mask_path), f"a single-channel mask of {image_hwc.shape[:2]} px",
                         f"shape {ids_hw.shape}", "save instance ids as a grayscale PNG")
    ids = [int(i) for i in np.unique(ids_hw) if i != 0]
    masks_nhw = np.stack([ids_hw == i for i in ids]) if ids else np.zeros(
        (0, *ids_hw.shape), dtype=bool)
    return SegmentationSample(image_path.stem, image_hwc, masks_nhw, tuple(ids))
