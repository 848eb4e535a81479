"""Streaming RDMs and CKA: equal to the in-memory functions and to independent references, from
any row-sliceable source, without ever asking for more than one block of rows at a time."""

from __future__ import annotations

import tracemalloc
import weakref

import numpy as np
import pytest
import torch
import zarr
from scipy.spatial.distance import pdist, squareform

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features import FeatureCache
from cortexalign.features import _cache as cache_mod
from cortexalign.metrics import cka, compute_rdm, streaming_cka, streaming_rdm
from cortexalign.metrics._streaming import STREAMING_CKA_KINDS, STREAMING_RDM_METHODS

S = 61
BLOCKS = [1, 7, 16, 60, 61, 100, None]  # 7 and 16 do not divide 61


def _features(s: int = S, d: int = 23, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(s, d)) + rng.normal(size=(1, d))  # non-zero means: centring matters


def _responses(x: np.ndarray, n: int = 9, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return x[:, :5] @ rng.normal(size=(5, n)) + rng.normal(size=(x.shape[0], n))


SCIPY = {"correlation": lambda x: squareform(pdist(x, "correlation")),
         "cosine": lambda x: squareform(pdist(x, "cosine")),
         "euclidean": lambda x: squareform(pdist(x, "sqeuclidean")) / x.shape[1]}


@pytest.mark.parametrize("method", sorted(STREAMING_RDM_METHODS))
@pytest.mark.parametrize("block_rows", BLOCKS)
def test_rdm_equals_compute_rdm_and_scipy(method, block_rows):
    x = _features()
    got = streaming_rdm(x, method, block_rows=block_rows, device="cpu")
    np.testing.assert_allclose(got, compute_rdm(x, method, device="cpu"), rtol=0, atol=1e-10)
    np.testing.assert_allclose(got, SCIPY[method](x), rtol=0, atol=1e-10)
    assert got.dtype == np.float64 and np.array_equal(got, got.T) and not np.diag(got).any()


def _numpy_cka(x: np.ndarray, y: np.ndarray, kind: str) -> float:
    """The published formulas on explicit Gram matrices (Kornblith 2019; Song et al. 2012)."""
    x, y = x - x.mean(0), y - y.mean(0)
    k, l_ = x @ x.T, y @ y.T
    if kind == "linear":
        return float(np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_)))
    n, one = k.shape[0], np.ones(k.shape[0])

    def hsic(a, b):
        a, b = a - np.diag(np.diag(a)), b - np.diag(np.diag(b))
        return (np.sum(a * b) + (one @ a @ one) * (one @ b @ one) / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * (a @ one) @ (b @ one)) / (n * (n - 3))

    return float(hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_)))


@pytest.mark.parametrize("kind", sorted(STREAMING_CKA_KINDS))
@pytest.mark.parametrize("block_rows", BLOCKS)
def test_cka_equals_cka_and_the_published_formula(kind, block_rows):
    x = _features()
    y = _responses(x)
    got = streaming_cka(x, y, kind, block_rows=block_rows, device="cpu")
    assert abs(got - cka(x, y, kind, device="cpu")) < 1e-10
    assert abs(got - _numpy_cka(x, y, kind)) < 1e-10


@pytest.mark.parametrize("kind", sorted(STREAMING_CKA_KINDS))
def test_cka_properties(kind):
    x = _features(s=80, d=12)
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(12, 12)))
    assert streaming_cka(x, x, kind, block_rows=9, device="cpu") == pytest.approx(1.0, abs=1e-12)
    # invariant to orthogonal maps and isotropic scaling of the features
    assert streaming_cka(x, 3.0 * x @ q, kind, block_rows=9, device="cpu") == pytest.approx(1.0)


def _sources(x: np.ndarray, tmp_path):
    old = cache_mod._CHUNK_BYTES
    cache_mod._CHUNK_BYTES = 8 * x.shape[1] * 10  # 10 rows a chunk
    try:
        cache = FeatureCache(tmp_path / "cache")
        cache.put("cd" * 32, x)
    finally:
        cache_mod._CHUNK_BYTES = old
    z = zarr.create_array(tmp_path / "z.zarr", shape=x.shape, chunks=(13, x.shape[1]),
                          dtype=x.dtype)
    z[...] = x
    mm = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=x.dtype, shape=x.shape)
    mm[...] = x
    mm.flush()
    return {"cache": cache.open("cd" * 32), "zarr": z, "torch": torch.from_numpy(x.copy()),
            "float32": x.astype(np.float32), "memmap": np.load(tmp_path / "m.npy", mmap_mode="r")}


@pytest.mark.parametrize("name", ["cache", "zarr", "torch", "float32", "memmap"])
def test_every_source_kind_gives_the_in_memory_result(tmp_path, name):
    x = _features()
    y = _responses(x)
    source = _sources(x, tmp_path)[name]
    ref = x.astype(np.float32).astype(np.float64) if name == "float32" else x
    np.testing.assert_allclose(streaming_rdm(source, block_rows=11, device="cpu"),
                               compute_rdm(ref, device="cpu"), rtol=0, atol=1e-10)
    assert abs(streaming_cka(source, y, block_rows=11, device="cpu")
               - cka(ref, y, device="cpu")) < 1e-10


def test_return_tensor_and_tensor_device():
    x = torch.from_numpy(_features())
    out = streaming_rdm(x, "euclidean", block_rows=8, return_tensor=True)
    assert isinstance(out, torch.Tensor) and out.device == x.device and out.dtype == torch.float64


def test_the_callers_array_is_not_modified():
    x, y = _features(), _responses(_features())
    x0, y0 = x.copy(), y.copy()
    for method in STREAMING_RDM_METHODS:
        streaming_rdm(x, method, block_rows=10, device="cpu")
    streaming_cka(x, y, "linear_debiased", block_rows=10, device="cpu")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


class RecordingSource:
    """An (s, d) source that hands out fresh copies and records what it was asked for, and how
    many of the blocks it handed out were still alive at each request."""

    def __init__(self, x: np.ndarray):
        self.x, self.shape = x, x.shape
        self.requests: list[tuple[int, int]] = []
        self.alive_at_request: list[int] = []
        self._handed: list[weakref.ref] = []

    def __getitem__(self, rows):
        assert isinstance(rows, slice) and rows.step is None, rows
        self.alive_at_request.append(sum(r() is not None for r in self._handed))
        start, stop, _ = rows.indices(self.shape[0])
        self.requests.append((start, stop))
        block = self.x[start:stop].copy()
        self._handed.append(weakref.ref(block))
        return block


@pytest.mark.parametrize("method", sorted(STREAMING_RDM_METHODS))
def test_rdm_never_holds_more_than_two_blocks_of_features(method):
    s, d, rows = 600, 2000, 50
    x = np.random.default_rng(0).normal(size=(s, d))  # 9.6 MB of float64 features
    source = RecordingSource(x)
    tracemalloc.start()
    try:
        streaming_rdm(source, method, block_rows=rows, device="cpu")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(b - a for a, b in source.requests) <= rows
    assert max(source.alive_at_request) <= 2  # block I and the previous block J, nothing more
    nb = -(-s // rows)
    assert len(source.requests) == nb * (nb + 1) // 2  # block I once, then each J >= I
    # numpy-side allocations (the blocks, their float64 conversions, the products) stay well
    # below the features: they are never gathered
    assert peak < x.nbytes / 2, (peak, x.nbytes)


def test_cka_reads_blocks_only():
    x = _features(s=200, d=50)
    sx, sy = RecordingSource(x), RecordingSource(_responses(x))
    streaming_cka(sx, sy, "linear_debiased", block_rows=32, device="cpu")
    for src in (sx, sy):
        assert max(b - a for a, b in src.requests) <= 32 and max(src.alive_at_request) <= 2


def test_a_cache_backed_run_reads_chunk_by_chunk(tmp_path):
    x = np.random.default_rng(1).normal(size=(720, 1000)).astype(np.float32)  # 2.88 MB
    old = cache_mod._CHUNK_BYTES
    cache_mod._CHUNK_BYTES = 24 * 4000  # 24 rows a chunk
    try:
        cache = FeatureCache(tmp_path)
        cache.put("ef" * 32, x)
        cache.put("0a" * 32, x[:48])
    finally:
        cache_mod._CHUNK_BYTES = old
    # a run on another, small entry first: lazy imports are not what is measured; the measured
    # entry is still read and verified for the first time
    streaming_rdm(cache.open("0a" * 32), "correlation", block_rows=24, device="cpu")
    view = cache.open("ef" * 32)
    tracemalloc.start()
    try:
        got = streaming_rdm(view, "correlation", block_rows=24, device="cpu")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(got, compute_rdm(x, device="cpu"), rtol=0, atol=1e-10)
    # decoded chunks, float64 blocks and zarr's reader state only (about 1.45 MB here, run alone
    # or in the suite): no whole copy of the features, float32 (2.88 MB) or float64 (5.8 MB)
    assert peak < 0.75 * x.nbytes, (peak, x.nbytes)


def test_nan_is_reported_with_the_blocks_rows():
    x = _features()
    x[37, 4] = np.nan
    with pytest.raises(InputError, match=r"rows 35:42 \(first at row 37, column 4\)"):
        streaming_rdm(x, block_rows=7, device="cpu")
    with pytest.raises(InputError, match="source_y.*first at row 37"):
        streaming_cka(_features(), x, block_rows=7, device="cpu")


def test_mismatched_rows_shapes_and_names_are_refused():
    x = _features()
    with pytest.raises(InputError, match="source_x"):
        streaming_cka(x, x[:-1], device="cpu")
    with pytest.raises(InputError, match="2-d"):
        streaming_rdm(x[:, 0], device="cpu")
    with pytest.raises(InputError, match="2-d"):
        streaming_rdm([[1.0, 2.0]], device="cpu")
    with pytest.raises(InputError, match="at least 2 stimuli"):
        streaming_rdm(x[:1], device="cpu")
    with pytest.raises(InputError, match="at least 4 stimuli"):
        streaming_cka(x[:3], x[:3], "linear_debiased", device="cpu")
    with pytest.raises(InputError, match="block_rows"):
        streaming_rdm(x, block_rows=0, device="cpu")
    with pytest.raises(UnknownNameError, match="crossnobis"):
        streaming_rdm(x, "crossnobis", device="cpu")
    with pytest.raises(UnknownNameError):
        streaming_cka(x, x, "rbf", device="cpu")
    with pytest.raises(InputError, match="real-valued"):
        streaming_rdm(x > 0, device="cpu")


def test_a_source_returning_wrong_rows_is_refused():
    class Short(RecordingSource):
        def __getitem__(self, rows):
            return super().__getitem__(rows)[:-1]

    with pytest.raises(InputError, match="rows 0:10"):
        streaming_rdm(Short(_features()), block_rows=10, device="cpu")


def test_constant_features_are_refused():
    x = np.tile(np.arange(5.0), (30, 1))
    with pytest.raises(InputError, match="vary"):
        streaming_rdm(x, "euclidean", block_rows=7, device="cpu")
    with pytest.raises(InputError, match="vary"):
        streaming_cka(x, _features(s=30), block_rows=7, device="cpu")
    x = _features(s=30)
    x[17] = 2.0  # a constant stimulus: uncorrelated with every other (dissimilarity 1), warned
    with pytest.warns(UserWarning, match="constant feature vector"):
        got = streaming_rdm(x, "correlation", block_rows=7, device="cpu")
    with pytest.warns(UserWarning, match="row 17"):
        ref = compute_rdm(x, "correlation", device="cpu")
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert (np.delete(got[17], 17) == 1.0).all()
