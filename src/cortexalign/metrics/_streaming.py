"""RDMs and CKA from features that need not fit in memory, read row block by row block.

A *source* is anything 2-d with ``shape`` whose ``source[a:b]`` returns those rows: a numpy array
or memmap, a torch tensor, a zarr array, or a verified feature-cache view
(``FeatureCache.open(key)``). The functions hold at most two row blocks of features (plus their
normalised copies and one block x block product) at a time; the features are never gathered.

- ``streaming_rdm``: the (s, s) RDM must fit (it is the result); it is filled block by block as in
  ``compute_rdm`` (upper block triangle, then mirrored), with the same per-row normalisation
  (``rdm.unit_rows``), the same product (``rdm.mm_nt``) and the same mirroring, so it equals
  ``compute_rdm`` up to summation order. Block I is read once per row of blocks and every block
  J >= I is read again: about (nb + 1) / 2 passes over the source for nb blocks.
- ``streaming_gram``: the (s, s) linear Gram ``Xc Xc^T`` of the centred features (one pass for the
  column means, then the block loop of ``streaming_rdm``), for the metrics that take a Gram
  (``cka_from_gram``).
- ``streaming_cka``: one pass for the stimulus means (the features are centred per block), then
  ``tr(K L)``, ``tr(K K)``, ``tr(L L)`` summed over the blocks ``K_IJ = Xc_I Xc_J^T`` of the upper
  block triangle (off-diagonal blocks counted twice). No s x s matrix is formed at all; the
  debiased estimator also needs ``diag K`` (s floats). Kornblith et al. 2019 (ICML) for CKA, Song
  et al. 2012 (JMLR 13:1393) for the unbiased HSIC (``_cka._hsic_unbiased``).

Every block is validated as it is read: real dtype, the expected shape, finite values (an
``InputError`` names the block's rows and the first bad row and column). The rows must vary
(checked on the first pass over the source, before the remaining blocks are multiplied).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._cka import _biased_cka, _debiased_cka
from cortexalign.rdm import (
    check_n_stimuli,
    device_of,
    mirror_rdm,
    mirror_upper,
    mm_nt,
    row_blocks,
    unit_rows,
)

__all__ = ["STREAMING_RDM_METHODS", "STREAMING_CKA_KINDS", "streaming_rdm", "streaming_gram",
           "streaming_cka"]

#: Default block size: rows such that one float64 block is about this many bytes.
BLOCK_BYTES = 64 * 2**20


def _shape(source, name: str, min_stimuli: int) -> tuple[int, int]:
    shape = tuple(getattr(source, "shape", ()))
    if len(shape) != 2 or not hasattr(source, "__getitem__"):
        raise InputError(name, "a 2-d (stimulus, feature) source that supports source[a:b] "
                         "(numpy, torch, zarr, FeatureCache.open(key))",
                         f"{type(source).__name__} of shape {shape}",
                         "flatten spatial dims to (s, d), or open the cache entry with "
                         "FeatureCache.open")
    s, d = int(shape[0]), int(shape[1])
    if s < min_stimuli:
        raise InputError(name, f"at least {min_stimuli} stimuli (rows)", f"{s}",
                         "score on more stimuli")
    if d < 1:
        raise InputError(name, "at least one feature (column)", "0 columns",
                         "check the layer selection")
    return s, d


def _block_rows(block_rows: int | None, d: int) -> int:
    if block_rows is None:
        return int(min(4096, max(64, BLOCK_BYTES // (8 * d))))
    if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) \
            or block_rows < 1:
        raise InputError("block_rows", "a positive number of rows per block (or None)",
                         repr(block_rows), "use e.g. block_rows=1024, or None for ~64 MiB blocks")
    return int(block_rows)


class _Reader:
    """Validated float64 row blocks of one source, on ``device``."""

    def __init__(self, source, name: str, d: int, device: torch.device):
        self.source, self.name, self.d, self.device = source, name, d, device

    def __call__(self, i0: int, i1: int) -> torch.Tensor:
        block = self.source[i0:i1]
        if isinstance(block, torch.Tensor):
            t = block.detach()
            ok = t.is_floating_point() or (t.dtype != torch.bool and not t.is_complex())
        else:
            arr = np.asarray(block)
            ok = arr.dtype.kind in "fiu"
            if ok:  # the conversion copies unless the block already is writeable float64
                arr = np.asarray(arr, dtype=np.float64)
                t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        if not ok:
            raise InputError(self.name, "real-valued features", f"dtype {block.dtype} in rows "
                             f"{i0}:{i1}", "cast the features to float")
        if tuple(t.shape) != (i1 - i0, self.d):
            raise InputError(self.name, f"rows {i0}:{i1} of shape ({i1 - i0}, {self.d})",
                             f"shape {tuple(t.shape)}", "give a source whose [a:b] returns "
                             "rows a..b-1 with every feature (an (s, d) array-like)")
        t = t.to(device=self.device, dtype=torch.float64)
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            r, c = (int(v) for v in torch.nonzero(bad)[0])
            raise InputError(self.name, "finite values", f"{int(bad.sum())} NaN/Inf values in "
                             f"rows {i0}:{i1} (first at row {i0 + r}, column {c})",
                             "drop or impute those entries (e.g. remove dead units or stimuli "
                             "with missing data) before scoring")
        return t


def _constant_error(name: str) -> InputError:
    return InputError(name, "features that vary across stimuli", "every stimulus has the same "
                      "feature vector (zero variance)", "check the layer (dead units, a constant "
                      "input) or pick another layer")


# -- RDMs ------------------------------------------------------------------------------------
def _prep_unit(center: bool) -> Callable[[torch.Tensor], tuple[torch.Tensor, None]]:
    return lambda x_bd: (unit_rows(x_bd, center=center), None)


def _post_one_minus(block: torch.Tensor, aux_i, aux_j, d: int) -> None:
    block.neg_().add_(1.0)


def _prep_euclidean(x_bd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x_bd, (x_bd * x_bd).sum(dim=1)


def _post_euclidean(block: torch.Tensor, sq_i: torch.Tensor, sq_j: torch.Tensor, d: int) -> None:
    # the same operations, in the same order, as _rdm.rdm_euclidean's block step
    block.mul_(-2.0).add_(sq_i[:, None]).add_(sq_j[None, :]).clamp_(min=0.0).div_(d)


STREAMING_RDM_METHODS: dict[str, tuple[Callable, Callable]] = {
    "correlation": (_prep_unit(center=True), _post_one_minus),
    "cosine": (_prep_unit(center=False), _post_one_minus),
    "euclidean": (_prep_euclidean, _post_euclidean),
}
"""Name -> ``(prepare(x_bd) -> (z_bd, aux), post(block, aux_i, aux_j, d))``: ``prepare`` acts on
one row block alone (rows are normalised independently), ``post`` turns ``z_I z_J^T`` into
dissimilarities in place. Same conventions as ``RDM_METHODS`` (rsatoolbox's)."""


def _prepare_rows(prepare: Callable, x_bd: torch.Tensor, name: str, i0: int, i1: int):
    try:
        return prepare(x_bd)
    except InputError as err:  # unit_rows counts rows within the block
        raise InputError(name, err.expected, f"{err.received} within rows {i0}:{i1} (row numbers "
                         f"counted from row {i0})", err.fix) from None


def streaming_rdm(source_sd, method: str = "correlation", block_rows: int | None = None,
                  device: str | torch.device | None = None,
                  return_tensor: bool = False) -> np.ndarray | torch.Tensor:
    """The RDM of (s, d) features read ``block_rows`` rows at a time.

    Parameters
    ----------
    source_sd : (s, d) row-sliceable features: numpy array or memmap, torch tensor, zarr array,
        or ``FeatureCache.open(key)``. Only ``source_sd[a:b]`` and ``shape`` are used.
    method : a key of ``STREAMING_RDM_METHODS``: ``correlation`` (1 - Pearson r), ``cosine``
        (1 - cosine) or ``euclidean`` (squared euclidean / d), as in ``compute_rdm``.
    block_rows : rows per block (default: a ~64 MiB float64 block, 64..4096 rows). At most two
        blocks and their normalised copies are held at once.
    device : where to compute (``None``: the device of a tensor source, else CUDA when present).
    return_tensor : return the float64 tensor on ``device`` instead of a numpy array.

    Returns
    -------
    rdm_ss : (s, s) float64, symmetric with a zero diagonal; equal to ``compute_rdm(x, method)``
        up to summation order.
    """
    if method not in STREAMING_RDM_METHODS:
        raise UnknownNameError("streaming RDM method", str(method), STREAMING_RDM_METHODS)
    s, d = _shape(source_sd, "source_sd", min_stimuli=2)
    spans = row_blocks(s, _block_rows(block_rows, d))
    dev = device_of(source_sd, device)
    read = _Reader(source_sd, "source_sd", d, dev)
    rdm_ss = torch.empty(s, s, dtype=torch.float64, device=dev)
    _fill_upper_blocks(rdm_ss, read, spans, *STREAMING_RDM_METHODS[method])
    mirror_rdm(rdm_ss, spans)
    return rdm_ss if return_tensor else rdm_ss.cpu().numpy()


def _fill_upper_blocks(out_ss: torch.Tensor, read: _Reader, spans: list[tuple[int, int]],
                       prepare: Callable, post: Callable) -> None:
    """``out[I, J] = post(z_I z_J^T)`` for the blocks J >= I, ``(z, aux) = prepare(rows)``; the
    lower block triangle is left for ``mirror_rdm``. Refuses rows that do not vary (first row of
    blocks, which reads every row once)."""
    row0_d, varies = None, False
    for k, (i0, i1) in enumerate(spans):
        x_i = read(i0, i1)
        z_i, aux_i = _prepare_rows(prepare, x_i, read.name, i0, i1)
        for j0, j1 in spans[k:]:
            x_j = x_i if j0 == i0 else read(j0, j1)
            if k == 0:
                row0_d = x_i[0].clone() if row0_d is None else row0_d
                varies = varies or bool((x_j != row0_d).any())
            z_j, aux_j = (z_i, aux_i) if j0 == i0 else _prepare_rows(prepare, x_j, read.name,
                                                                      j0, j1)
            block = mm_nt(z_i, z_j)
            post(block, aux_i, aux_j, read.d)
            out_ss[i0:i1, j0:j1] = block
        if k == 0 and not varies:
            raise _constant_error(read.name)


def _prep_shift(mu_d: torch.Tensor | None) -> Callable[[torch.Tensor], tuple[torch.Tensor, None]]:
    # not in place: a float64 block may share memory with the caller's array
    return lambda x_bd: (x_bd if mu_d is None else x_bd - mu_d, None)


def _post_none(block: torch.Tensor, aux_i, aux_j, d: int) -> None:
    return None


def streaming_gram(source_sd, center: bool = True, block_rows: int | None = None,
                   device: str | torch.device | None = None,
                   return_tensor: bool = False) -> np.ndarray | torch.Tensor:
    """The linear Gram matrix ``Xc Xc^T`` of (s, d) features read ``block_rows`` rows at a time.

    Parameters
    ----------
    source_sd : (s, d) row-sliceable features (numpy, memmap, torch, zarr,
        ``FeatureCache.open(key)``); only ``source_sd[a:b]`` and ``shape`` are used.
    center : subtract the column means first (one extra pass). CKA is unchanged by the centring
        (``cka_from_gram`` centres the Gram again) but centring the features first avoids the
        cancellation of large means in ``K - row means - column means``.
    block_rows, device, return_tensor : as in ``streaming_rdm``.

    Returns
    -------
    gram_ss : (s, s) float64, exactly symmetric; equal to ``xc @ xc.T`` (``x @ x.T`` without
        ``center``) up to summation order. Only the upper block triangle is multiplied.
    """
    s, d = _shape(source_sd, "source_sd", min_stimuli=2)
    spans = row_blocks(s, _block_rows(block_rows, d))
    dev = device_of(source_sd, device)
    read = _Reader(source_sd, "source_sd", d, dev)
    mu_d = _column_means(read, spans, s) if center else None
    gram_ss = torch.empty(s, s, dtype=torch.float64, device=dev)
    _fill_upper_blocks(gram_ss, read, spans, _prep_shift(mu_d), _post_none)
    mirror_upper(gram_ss, spans)
    return gram_ss if return_tensor else gram_ss.cpu().numpy()


# -- CKA -------------------------------------------------------------------------------------
def _cka_linear(kl, kk, ll, dk_s, dl_s, s: int) -> torch.Tensor:
    return _biased_cka(kl, kk, ll)


STREAMING_CKA_KINDS: dict[str, Callable[..., torch.Tensor]] = {
    "linear": _cka_linear,
    "linear_debiased": _debiased_cka,
}
"""Name -> ``fn(tr_kl, tr_kk, tr_ll, diag_k, diag_l, s) -> 0-d tensor`` from the traces of the
centred linear Gram matrices (the same estimators as ``CKA_KINDS``)."""


def _column_means(read: _Reader, spans: list[tuple[int, int]], s: int) -> torch.Tensor:
    """(d,) mean over stimuli, in one pass; refuses features that do not vary."""
    total_d, row0_d, varies = None, None, False
    for i0, i1 in spans:
        x = read(i0, i1)
        row0_d = x[0].clone() if row0_d is None else row0_d
        varies = varies or bool((x != row0_d).any())
        total_d = x.sum(dim=0) if total_d is None else total_d.add_(x.sum(dim=0))
    if not varies:
        raise _constant_error(read.name)
    return total_d.div_(s)


def _gram_traces(read_x: _Reader, read_y: _Reader, mu_x: torch.Tensor, mu_y: torch.Tensor,
                 spans: list[tuple[int, int]], s: int) -> tuple[torch.Tensor, ...]:
    """tr(KL), tr(KK), tr(LL) and diag K, diag L of the centred linear Grams, block by block."""
    zero = torch.zeros((), dtype=torch.float64, device=mu_x.device)
    kl, kk, ll = zero.clone(), zero.clone(), zero.clone()
    dk_s = torch.empty(s, dtype=torch.float64, device=mu_x.device)
    dl_s = torch.empty_like(dk_s)
    for k, (i0, i1) in enumerate(spans):
        # not in place: a float64 block may share memory with the caller's array
        x_i, y_i = read_x(i0, i1) - mu_x, read_y(i0, i1) - mu_y
        dk_s[i0:i1], dl_s[i0:i1] = (x_i * x_i).sum(dim=1), (y_i * y_i).sum(dim=1)
        for j0, j1 in spans[k:]:
            x_j, y_j = ((x_i, y_i) if j0 == i0
                        else (read_x(j0, j1) - mu_x, read_y(j0, j1) - mu_y))
            k_ij, l_ij = mm_nt(x_i, x_j), mm_nt(y_i, y_j)
            w = 1.0 if j0 == i0 else 2.0  # K_JI = K_IJ^T: off-diagonal blocks count twice
            kl += w * (k_ij * l_ij).sum()
            kk += w * (k_ij * k_ij).sum()
            ll += w * (l_ij * l_ij).sum()
    return kl, kk, ll, dk_s, dl_s


def streaming_cka(source_x, source_y, kind: str = "linear", block_rows: int | None = None,
                  device: str | torch.device | None = None) -> float:
    """Linear CKA between two (s, d) sources read ``block_rows`` rows at a time.

    Parameters
    ----------
    source_x : (s, dx) row-sliceable features; source_y : (s, dy) features or responses, rows
        in the same stimulus order (numpy, torch, zarr, ``FeatureCache.open(key)``).
    kind : a key of ``STREAMING_CKA_KINDS``: ``linear`` (biased HSIC, Kornblith et al. 2019) or
        ``linear_debiased`` (Song et al. 2012's unbiased HSIC). ``rbf`` needs the median of all
        pairwise distances and is not streamed: use ``cka``.
    block_rows : rows per block (default: ~64 MiB float64 blocks of the wider source).
    device : where to compute (``None``: the device of a tensor ``source_x``, else CUDA).

    Returns
    -------
    float, equal to ``cka(x, y, kind)`` up to summation order. Two passes for the means, then
    about (nb + 1) / 2 passes over each source; no s x s matrix is formed.
    """
    if kind not in STREAMING_CKA_KINDS:
        raise UnknownNameError("streaming CKA kind", str(kind), STREAMING_CKA_KINDS)
    need = 4 if kind == "linear_debiased" else 3
    s, dx = _shape(source_x, "source_x", min_stimuli=need)
    s_y, dy = _shape(source_y, "source_y", min_stimuli=need)
    check_n_stimuli(s, s_y, "source_x")
    spans = row_blocks(s, _block_rows(block_rows, max(dx, dy)))
    dev = device_of(source_x, device)
    read_x, read_y = _Reader(source_x, "source_x", dx, dev), _Reader(source_y, "source_y", dy, dev)
    mu_x, mu_y = _column_means(read_x, spans, s), _column_means(read_y, spans, s)
    traces = _gram_traces(read_x, read_y, mu_x, mu_y, spans, s)
    return float(STREAMING_CKA_KINDS[kind](*traces, s))
