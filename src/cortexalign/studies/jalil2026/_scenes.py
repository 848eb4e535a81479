"""Simulated scenes: 1/f grey backgrounds with polygon objects, and a COCO instance set of them.

Natural images have a power spectrum falling as 1/f^2 and hold objects; the simulated scenes
have both, so attention maps vary across images the way they do on photographs, and the same
generator gives a segmentation set whose ground truth is exact: each object is a polygon,
rasterised with pycocotools (the mask the COCO tools and the annotation file agree on).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

__all__ = ["scene_images", "write_coco"]


def _pink_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) zero-mean unit-sd noise with a 1/f amplitude spectrum (drawn at a quarter of the
    resolution and upsampled bilinearly: above that the 1/f spectrum holds little power)."""
    from scipy.ndimage import zoom

    small = _pink_noise_full(rng, max(h // 4, 8), max(w // 4, 8))
    img = zoom(small, (h / small.shape[0], w / small.shape[1]), order=1)[:h, :w]
    return (img - img.mean()) / img.std()


def _pink_noise_full(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f
    spec[0, 0] = 0.0
    img = np.fft.irfft2(spec, s=(h, w))
    return (img - img.mean()) / img.std()


def _polygon(rng: np.random.Generator, h: int, w: int) -> list[float]:
    """A star-shaped polygon (x0, y0, x1, y1, ...) of 5-9 vertices inside the image."""
    n = int(rng.integers(5, 10))
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    radius = rng.uniform(0.06, 0.2) * min(h, w)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius * rng.uniform(0.6, 1.0, n)
    xs = np.clip(cx + r * np.cos(angles), 0, w - 1)
    ys = np.clip(cy + r * np.sin(angles), 0, h - 1)
    return np.stack([xs, ys], 1).ravel().round(2).tolist()


def _masks(polygons: list[list[float]], h: int, w: int) -> np.ndarray:
    """(n, h, w) bool masks of the polygons, rasterised by pycocotools."""
    from pycocotools import mask as mask_utils

    if not polygons:
        return np.zeros((0, h, w), dtype=bool)
    rles = [mask_utils.merge(mask_utils.frPyObjects([p], h, w)) for p in polygons]
    with warnings.catch_warnings():  # pycocotools' own NumPy 2 copy= deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.moveaxis(mask_utils.decode(rles), -1, 0).astype(bool)


def _scene(rng: np.random.Generator, h: int, w: int, n_objects: int
           ) -> tuple[np.ndarray, list[list[float]], np.ndarray]:
    """One uint8 (h, w) scene, its object polygons and their visible masks (later on top)."""
    img = 0.5 + 0.12 * _pink_noise(rng, h, w)
    texture = 0.05 * _pink_noise(rng, h, w)
    polygons = [_polygon(rng, h, w) for _ in range(n_objects)]
    masks = _masks(polygons, h, w)
    for m in masks:
        img[m] = rng.uniform(0.1, 0.9) + texture[m]
    visible = masks.copy()
    for k in range(len(masks) - 1):  # an object is hidden where a later one covers it
        visible[k] &= ~masks[k + 1:].any(0)
    return np.clip(img * 255, 0, 255).astype(np.uint8), polygons, visible


def scene_images(n: int, hw: tuple[int, int], seed: int) -> np.ndarray:
    """(n, h, w) uint8 grey scenes (the natural-scenes template of the simulation)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    return np.stack([_scene(rng, h, w, int(rng.integers(1, 5)))[0] for _ in range(n)])


def write_coco(root: Path, n: int, hw: tuple[int, int], seed: int) -> Path:
    """Write ``root/images/*.png`` and ``root/annotations/instances.json`` (COCO format:
    polygon segmentations, bbox, area, iscrowd 0) and return the annotation file.

    An object that a later one covers, even in part, is not annotated, so every polygon is
    exactly the visible object (its pycocotools mask is the ground truth).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = hw
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        img, polygons, visible = _scene(rng, h, w, int(rng.integers(2, 5)))
        name = f"{i:012d}.png"
        Image.fromarray(np.repeat(img[..., None], 3, -1)).save(root / "images" / name)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        full = _masks(polygons, h, w)
        for poly, vis, m in zip(polygons, visible, full, strict=True):
            if vis.sum() < m.sum():
                continue
            ys, xs = np.nonzero(m)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1,
                         "segmentation": [poly], "area": float(m.sum()), "iscrowd": 0,
                         "bbox": [float(xs.min()), float(ys.min()),
                                  float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]})
    coco = {"info": {"description": "cortexalign simulated shapes (jalil2026 simulator)"},
            "images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "object", "supercategory": "shape"}]}
    path = root / "annotations" / "instances.json"
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(coco, f)
    os.replace(tmp, path)
    return path
