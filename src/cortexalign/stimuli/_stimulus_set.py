"""``StimulusSet``: an ordered set of uniquely named images, loaded lazily, with a content hash."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from cortexalign.errors import InputError

__all__ = ["StimulusSet", "check_image"]

ImageLoader = Callable[[int], np.ndarray]
#: Threads hashing (and, for lazy sets, loading) images: hashlib and image decoders drop the GIL.
HASH_WORKERS = min(8, os.cpu_count() or 1)


def _image_digest(img: np.ndarray) -> bytes:
    h = hashlib.sha256(np.asarray(img.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(img))  # the buffer itself: no copy
    return h.digest()


def pixel_digest(n: int, image: Callable[[int], np.ndarray]) -> str:
    """sha256 of the per-image sha256 digests (shape and pixels) of ``image(0..n-1)``, in order.

    The images are loaded and hashed by ``HASH_WORKERS`` threads; the result depends only on the
    pixels and their order.
    """
    h = hashlib.sha256(b"cortexalign-pixels-v2\0")
    with ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="cortexalign-hash") as pool:
        for digest in pool.map(lambda i: _image_digest(image(i)), range(n)):
            h.update(digest)
    return h.hexdigest()


def check_image(img: np.ndarray, what: str) -> np.ndarray:
    """Return ``img`` as an (H, W, C) uint8 array with C in {1, 3}; raise on anything else."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise InputError(what, "an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)",
                         f"shape {img.shape}", "pass grayscale or RGB images, channels last")
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating):
            if not np.isfinite(img).all():
                raise InputError(what, "finite pixel values", "NaN or Inf pixels",
                                 "clean or drop the image before building the stimulus set")
            if img.min() < 0 or img.max() > 1:
                raise InputError(what, "float pixels in [0, 1] (or uint8 in [0, 255])",
                                 f"values in [{img.min():.3g}, {img.max():.3g}]",
                                 "rescale to [0, 1] or convert to uint8")
            img = np.round(img * 255).astype(np.uint8)
        elif np.issubdtype(img.dtype, np.integer):
            if img.min() < 0 or img.max() > 255:
                raise InputError(what, "integer pixels in [0, 255]",
                                 f"values in [{img.min()}, {img.max()}]", "convert to uint8")
            img = img.astype(np.uint8)
        else:
            raise InputError(what, "uint8 or float pixels", f"dtype {img.dtype}", "convert to uint8")
    return img


@dataclass(frozen=True, eq=False)
class StimulusSet:
    """An ordered set of stimuli with unique string ids.

    Images are produced on demand by ``loader(i)`` (an (H, W, C) uint8 array, C = 1 or 3), so a
    folder of thousands of images costs nothing until a model reads them.

    Parameters
    ----------
    name : a short name for the set (used in cache keys and reports).
    ids : the stimulus ids, in order; unique, non-empty strings.
    loader : ``loader(i) -> (H, W, C) uint8`` for the i-th stimulus.
    metadata : optional per-stimulus columns (each a sequence of length ``len(ids)``).
    fingerprint : optional precomputed content digest (e.g. the sha256 of the source file); when
        absent the content hash is computed from the ids and every image's pixels.
    """

    name: str
    ids: tuple[str, ...] = field(repr=False)
    loader: ImageLoader = field(repr=False)
    metadata: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        ids = tuple(self.ids)
        if len(ids) == 0:
            raise InputError("ids", "at least one stimulus id", "an empty list",
                             "point the loader at a folder or file that holds images")
        bad = [i for i in ids if not isinstance(i, str) or not i]
        if bad:
            raise InputError("ids", "non-empty strings", f"{bad[:3]!r}", "convert ids with str()")
        seen: set[str] = set()
        dupes = [i for i in ids if i in seen or seen.add(i)]
        if dupes:
            raise InputError("ids", "unique stimulus ids", f"duplicates {sorted(set(dupes))[:5]!r}",
                             "rename or drop the repeated stimuli")
        meta = {}
        for key, col in dict(self.metadata).items():
            col = np.asarray(col)
            if len(col) != len(ids):
                raise InputError(f"metadata[{key!r}]", f"{len(ids)} values (one per stimulus)",
                                 f"{len(col)} values", "give one value per stimulus, in id order")
            meta[key] = col
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "metadata", meta)

    def __repr__(self) -> str:
        head = ", ".join(self.ids[:3]) + (", ..." if len(self.ids) > 3 else "")
        return f"StimulusSet(name={self.name!r}, n={len(self.ids)}, ids=[{head}])"

    # -- access -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def index(self, stimulus_id: str) -> int:
        """The position of ``stimulus_id`` in the set; ``InputError`` for an unknown id."""
        try:
            return self._positions[stimulus_id]
        except KeyError:
            raise InputError("stimulus_id", f"an id of stimulus set {self.name!r}",
                             repr(stimulus_id), "check the id spelling") from None

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.ids)}

    def image(self, i: int | str) -> np.ndarray:
        """The i-th image (or the image with id ``i``) as an (H, W, C) uint8 array."""
        idx = self.index(i) if isinstance(i, str) else int(i)
        return check_image(self.loader(idx), f"image {self.ids[idx]!r} of stimulus set {self.name!r}")

    def images(self, indices: Sequence[int] | None = None) -> Iterator[np.ndarray]:
        """The images (``image(i)``) of ``indices`` (default: every stimulus), one at a time."""
        for i in range(len(self)) if indices is None else indices:
            yield self.image(i)

    def subset(self, ids: Sequence[str], name: str | None = None) -> StimulusSet:
        """A new set holding ``ids`` (in that order)."""
        pos = [self.index(s) for s in ids]
        return StimulusSet(
            name=name or f"{self.name}[{len(pos)}]",
            ids=tuple(ids),
            loader=lambda i, _p=tuple(pos), _l=self.loader: _l(_p[i]),
            metadata={k: v[pos] for k, v in self.metadata.items()},
            # the parent's digest covers these pixels (the ids enter the hash apart)
            fingerprint=None if self.fingerprint is None else f"subset of {self.content_hash}",
        )

    # -- identity ---------------------------------------------------------------------------
    @cached_property
    def content_hash(self) -> str:
        """sha256 over the ids and the pixels (or the given fingerprint): the cache key part."""
        h = hashlib.sha256()
        h.update(b"cortexalign-stimuli-v1\0")
        for s in self.ids:
            h.update(s.encode() + b"\0")
        if self.fingerprint is not None:
            h.update(self.fingerprint.encode())
        else:
            h.update(pixel_digest(len(self), self.image).encode())
        return h.hexdigest()

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, images: np.ndarray | Sequence[np.ndarray], ids: Sequence[str] | None = None,
                    name: str = "arrays", metadata: Mapping[str, np.ndarray] | None = None
                    ) -> StimulusSet:
        """Build a set from in-memory images: an (S, H, W[, C]) array or a list of (H, W[, C])."""
        imgs = [check_image(im, f"images[{k}]") for k, im in enumerate(images)]
        ids = tuple(str(i) for i in ids) if ids is not None else tuple(f"stim{k:05d}" for k in range(len(imgs)))
        if len(ids) != len(imgs):
            raise InputError("ids", f"{len(imgs)} ids (one per image)", f"{len(ids)} ids",
                             "give exactly one id per image")
        return cls(name=name, ids=ids, loader=imgs.__getitem__, metadata=metadata or {},
                   fingerprint=pixel_digest(len(imgs), imgs.__getitem__))
