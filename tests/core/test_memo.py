"""``cortexalign.memo``: results kept per exact input, bounded in bytes, least recent first out."""

from __future__ import annotations

import numpy as np
import torch

from cortexalign.memo import Memo, array_digest
from cortexalign.neural import split_half_reliability


def test_digest_is_of_content_shape_and_dtype():
    a = np.arange(12.0).reshape(3, 4)
    assert array_digest(a) == array_digest(a.copy()) == array_digest(torch.from_numpy(a))
    assert array_digest(a) != array_digest(a.reshape(4, 3))
    assert array_digest(a) != array_digest(a.astype(np.float32))
    b = a.copy()
    b[2, 3] += 1e-12
    assert array_digest(a) != array_digest(b)
    assert array_digest(a, b) != array_digest(b, a)


def test_memo_keeps_evicts_and_skips_oversized():
    memo, calls = Memo(max_bytes=3 * 800), []

    def make(k):
        return lambda: calls.append(k) or np.full(100, float(ord(k[0])))  # 800 bytes

    first = memo.get("a", make("a"))
    assert memo.get("a", make("a")) is first and calls == ["a"]
    memo.get("b", make("b"))
    memo.get("c", make("c"))
    memo.get("a", make("a"))  # "a" is now the most recent: "b" goes first
    memo.get("d", make("d"))
    assert len(memo) == 3 and calls == ["a", "b", "c", "d"]
    memo.get("b", make("b"))
    assert calls[-1] == "b"
    big = memo.get("big", lambda: np.zeros(1000))
    assert big.shape == (1000,) and len(memo) == 3  # larger than the memo: not kept


def test_reliability_is_recomputed_for_changed_responses():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(30, 4, 1))
    values = signal + 0.5 * rng.normal(size=(30, 4, 6))
    first = split_half_reliability(values, n_splits=5)
    np.testing.assert_array_equal(split_half_reliability(values, n_splits=5), first)
    values[:, 0] = rng.normal(size=(30, 6))  # neuroid 0 now pure noise, in place
    again = split_half_reliability(values, n_splits=5)
    assert again[0] < first[0] - 0.3
    np.testing.assert_array_equal(again[1:], first[1:])
