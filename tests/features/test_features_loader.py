"""The thread-pool loader of extraction: order, prefetch bound, errors, early stop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cortexalign.errors import InputError
from cortexalign.features import extract_features
from cortexalign.features._pipeline import iter_batches
from cortexalign.stimuli import StimulusSet, load_folder


def _set_with_jitter(n: int) -> StimulusSet:
    """Images whose pixel value is their index; later images decode faster, so a loader that
    returned results in completion order would scramble them."""
    def load(i: int) -> np.ndarray:
        time.sleep(0.002 * ((n - i) % 5))
        return np.full((4, 5, 3), i, dtype=np.uint8)
    return StimulusSet(name="jitter", ids=tuple(f"s{i}" for i in range(n)), loader=load)


@pytest.mark.parametrize(("batch_size", "workers", "prefetch"), [(3, 4, 2), (1, 2, 1), (7, 3, 5)])
def test_yields_every_batch_in_order(batch_size, workers, prefetch):
    n = 17
    got = list(iter_batches(_set_with_jitter(n), batch_size, lambda imgs: [int(im[0, 0, 0]) for im in imgs],
                            workers=workers, prefetch=prefetch))
    expected = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    assert got == expected


def test_prepare_sees_whole_batches_in_one_call():
    calls = []
    list(iter_batches(_set_with_jitter(10), 4, lambda imgs: calls.append(len(imgs))))
    assert calls == [4, 4, 2]


def test_loads_ahead_by_at_most_prefetch_batches():
    n, batch_size, prefetch = 40, 4, 2
    loaded: list[int] = []
    lock = threading.Lock()

    def load(i: int) -> np.ndarray:
        with lock:
            loaded.append(i)
        return np.zeros((2, 2, 3), dtype=np.uint8)

    stim = StimulusSet(name="count", ids=tuple(f"s{i}" for i in range(n)), loader=load)
    batches = iter_batches(stim, batch_size, lambda imgs: imgs, workers=2, prefetch=prefetch)
    for k, _ in enumerate(batches):
        with lock:
            assert max(loaded) < (k + 1 + prefetch) * batch_size
    assert sorted(loaded) == list(range(n))


def _folder_with_corrupt_file(tmp_path, n: int, bad: int):
    rng = np.random.default_rng(0)
    for i in range(n):
        path = tmp_path / f"img{i:02d}.png"
        if i == bad:
            path.write_bytes(b"not an image at all")
        else:
            Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(path)
    return load_folder(tmp_path, verify=False)


def test_corrupt_image_error_reaches_the_consumer_at_its_batch(tmp_path):
    stim = _folder_with_corrupt_file(tmp_path, n=9, bad=5)
    batches = iter_batches(stim, 2, lambda imgs: len(imgs), workers=3, prefetch=2)
    assert [next(batches), next(batches)] == [2, 2]  # stimuli 0-3 are fine
    with pytest.raises(InputError, match="img05.png"):
        next(batches)


def test_corrupt_image_fails_extraction_and_caches_nothing(tmp_path, adapter):
    from cortexalign.features import FeatureCache

    (tmp_path / "imgs").mkdir()
    stim = _folder_with_corrupt_file(tmp_path / "imgs", n=6, bad=3)
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(InputError, match="img03.png"):
        extract_features(adapter, stim, adapter.layers()[-1], batch_size=2, cache=cache,
                         progress=False)
    assert cache.keys() == []


def test_early_stop_cancels_pending_work():
    stim = _set_with_jitter(50)
    batches = iter_batches(stim, 2, lambda imgs: imgs, workers=2, prefetch=3)
    next(batches)
    batches.close()  # must return (no hang) and leave no worker threads behind
    assert not [t for t in threading.enumerate() if t.name.startswith("cortexalign-")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_preprocessing_matches_the_cpu_path():
    """On CUDA a ``Preprocess`` runs on the device; the features equal the CPU path's."""
    from _features_standin import TinyAdapter

    from cortexalign.models import Preprocess

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(20, 30, 3), (12, 12, 3)] * 5]
    stim = StimulusSet.from_arrays(imgs, ids=[f"s{k}" for k in range(10)])
    out = {}
    for dev in ("cpu", "cuda"):
        adapter = TinyAdapter()
        adapter.preprocess = Preprocess(size=(12, 12), mean=(0.5,) * 3, std=(0.25,) * 3)
        adapter.module.to(dev)
        adapter.device = torch.device(dev)
        out[dev] = extract_features(adapter, stim, ["conv2", "tokens"], batch_size=4,
                                    progress=False, precision="fp32")
    for layer in ("conv2", "tokens"):
        np.testing.assert_allclose(out["cuda"][layer].values, out["cpu"][layer].values, atol=1e-4)
