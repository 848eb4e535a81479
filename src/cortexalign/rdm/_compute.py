"""Representational dissimilarity matrices from features, on any device, in float64.

Every method is a plain function in ``RDM_METHODS`` taking a float64 tensor and returning an
(s, s) tensor; ``compute_rdm`` validates and dispatches. The (s, s) result is filled block by block
(``chunk_size`` rows at a time; only blocks on or above the diagonal are multiplied, then mirrored,
which saves close to half the flops and makes the result exactly symmetric), so the only s x s
buffer is the result itself: 20,000 stimuli need 3.2 GB for the RDM and one row block besides.

Conventions follow rsatoolbox 0.3 (Nili et al. 2014, PLoS Comput Biol 10:e1003553) so numbers
agree with it: ``euclidean`` is the *squared* euclidean distance divided by the number of
features; ``crossnobis`` is the leave-one-repetition-out cross-validated squared Mahalanobis
distance divided by the number of channels (Walther et al. 2016, NeuroImage 137:188-200).

``correlation`` and ``cosine`` of a stimulus whose feature vector is constant (all zero for
``cosine``; e.g. an image that makes no spike in a spiking layer) are undefined: such a stimulus
is taken as uncorrelated with every other (dissimilarity 1), with a ``ConstantFeaturesWarning``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from cortexalign.compute import gram_work, numpy_input, numpy_kernel, sized_by, total_gram_work
from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.rdm._numpy_rdm import NUMPY_RDM_METHODS, numpy_rdm
from cortexalign.rdm._validate import (
    ConstantFeaturesWarning,
    as_array,
    as_tensor,
    check_features,
    warn_constant,
)

__all__ = ["RDM_METHODS", "ConstantFeaturesWarning", "compute_rdm", "compute_rdms", "rdm_tensor",
           "upper_tri", "mm_nt", "rdm_correlation", "rdm_cosine", "rdm_euclidean", "rdm_crossnobis",
           "row_blocks", "mirror_upper", "mirror_rdm", "unit_rows", "device_of"]


_MAX_CHUNK = 4096


def row_blocks(s: int, chunk_size: int | None) -> list[tuple[int, int]]:
    """The (start, stop) row spans that cover ``s`` rows, ``chunk_size`` rows each (default: ~8)."""
    # ~8 row blocks by default: only blocks on or above the diagonal are multiplied, so the flops
    # are (nb + 1) / (2 nb) of a full Gram matrix while each matmul stays large
    c = int(chunk_size) if chunk_size else min(_MAX_CHUNK, max(256, -(-s // 8)))
    c = max(1, c)
    return [(i, min(i + c, s)) for i in range(0, s, c)]


def mm_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T``. On the CPU the product goes through NumPy's BLAS, which runs float64 GEMM
    about 2x faster than torch's CPU build on our 2-core machines (0.71 s vs 1.34-1.43 s for
    2,500 x 10,000); the numbers are the same up to summation order (tested against rsatoolbox).
    """
    if a.device.type == "cpu" and not (a.requires_grad or b.requires_grad):
        return torch.from_numpy(a.numpy() @ b.numpy().T)
    return a @ b.T


def _gram_into(a_sd: torch.Tensor, out_ss: torch.Tensor, chunk_size: int | None,
               post: Callable[[torch.Tensor, int, int], None]) -> None:
    """``out = post(a @ a.T)`` for the upper block triangle, then mirrored: exactly symmetric.

    ``post(block, i0, j0)`` transforms in place the block of rows ``i0:`` and columns ``j0:``.
    """
    spans = row_blocks(a_sd.shape[0], chunk_size)
    for i0, i1 in spans:
        block = mm_nt(a_sd[i0:i1], a_sd[i0:])
        post(block, i0, i0)
        out_ss[i0:i1, i0:] = block
    mirror_rdm(out_ss, spans)


def mirror_upper(out_ss: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
    """Copy the upper block triangle onto the lower one (the diagonal blocks by their upper
    triangle): exactly symmetric."""
    for k, (i0, i1) in enumerate(spans):
        diag = out_ss[i0:i1, i0:i1]
        diag.copy_(torch.triu(diag) + torch.triu(diag, 1).T)
        for j0, j1 in spans[k + 1:]:
            out_ss[j0:j1, i0:i1] = out_ss[i0:i1, j0:j1].T
    return out_ss


def mirror_rdm(rdm_ss: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
    """``mirror_upper``, then zero the diagonal (an RDM's)."""
    return mirror_upper(rdm_ss, spans).fill_diagonal_(0.0)


def _centred(x_sd: torch.Tensor, mean_s1: torch.Tensor | None) -> torch.Tensor:
    """``x - mean`` (a copy of ``x`` for ``None``) in a new tensor. On the CPU NumPy does it:
    torch's CPU allocator maps fresh pages for every large tensor, which made this subtraction
    cost 220 ms against NumPy's 38 ms for 2,500 x 10,000 float64 on our 2-core machines (the
    numbers are the same: one IEEE subtraction per element)."""
    if x_sd.device.type == "cpu" and not x_sd.requires_grad:
        x = x_sd.numpy()
        return torch.from_numpy(x.copy() if mean_s1 is None else x - mean_s1.numpy())
    return x_sd.clone() if mean_s1 is None else x_sd - mean_s1


def unit_rows(x_sd: torch.Tensor, center: bool) -> torch.Tensor:
    """Rows (centred when ``center``) scaled to unit norm; a constant (all-zero) row stays zero,
    with a ``ConstantFeaturesWarning``."""
    mean_s1 = x_sd.mean(dim=1, keepdim=True) if center else None
    z = _centred(x_sd, mean_s1)
    norm = torch.linalg.vector_norm(z, dim=1)
    # |x|^2 = |x - m|^2 + d m^2: the raw norm without another pass over x
    raw = norm if not center else torch.sqrt(norm**2 + x_sd.shape[1] * mean_s1[:, 0] ** 2)
    zero = norm <= 1e-12 * raw.clamp_min(1e-300)
    if bool(zero.any()):
        warn_constant(zero.cpu().numpy(), center)
        keep = (~zero).to(z.dtype)[:, None]
        z = z * keep if z.requires_grad else z.mul_(keep)
        norm = torch.where(zero, torch.ones_like(norm), norm)
    # out of place under autograd: the norm's backward needs z as it was
    return z / norm[:, None] if z.requires_grad else z.div_(norm[:, None])


def _numpy_path(x_sd: torch.Tensor, chunk_size: int | None) -> bool:
    """Whether ``rdm_*`` computes in NumPy (``_numpy_rdm``): a CPU float64 tensor outside
    autograd (``compute.numpy_kernel``), with no ``chunk_size`` asked for (the blocked torch
    path bounds its buffers to one row block; the NumPy path needs the features' copy and the
    result, as much as the blocked path with its default blocks)."""
    return chunk_size is None and x_sd.dtype == torch.float64 and numpy_kernel(x_sd)


def rdm_correlation(x_sd: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """1 - Pearson correlation between the feature vectors of each pair of stimuli."""
    if _numpy_path(x_sd, chunk_size):
        return torch.from_numpy(numpy_rdm(x_sd.numpy(), "correlation"))
    z = unit_rows(x_sd, center=True)
    out = torch.empty(z.shape[0], z.shape[0], dtype=z.dtype, device=z.device)
    _gram_into(z, out, chunk_size, lambda b, i0, j0: b.neg_().add_(1.0))
    return out


def rdm_cosine(x_sd: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """1 - cosine similarity between the feature vectors (no centring)."""
    if _numpy_path(x_sd, chunk_size):
        return torch.from_numpy(numpy_rdm(x_sd.numpy(), "cosine"))
    z = unit_rows(x_sd, center=False)
    out = torch.empty(z.shape[0], z.shape[0], dtype=z.dtype, device=z.device)
    _gram_into(z, out, chunk_size, lambda b, i0, j0: b.neg_().add_(1.0))
    return out


def rdm_euclidean(x_sd: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Squared euclidean distance divided by the number of features (rsatoolbox's convention)."""
    if _numpy_path(x_sd, chunk_size):
        return torch.from_numpy(numpy_rdm(x_sd.numpy(), "euclidean"))
    d = x_sd.shape[1]
    sq_s = (x_sd * x_sd).sum(dim=1)
    out = torch.empty(x_sd.shape[0], x_sd.shape[0], dtype=x_sd.dtype, device=x_sd.device)

    def post(b: torch.Tensor, i0: int, j0: int) -> None:
        rows = sq_s[i0:i0 + b.shape[0], None]
        b.mul_(-2.0).add_(rows).add_(sq_s[None, j0:]).clamp_(min=0.0).div_(d)

    _gram_into(x_sd, out, chunk_size, post)
    return out


def rdm_crossnobis(x_snr: torch.Tensor, chunk_size: int | None = None,
                   noise_precision: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-validated squared Mahalanobis distance over repetition folds, divided by n channels.

    rsatoolbox averages, over folds k, the kernel ``mean_{l != k}(x_l) P x_k^T``; summed over k
    this is ``(S P S^T - sum_k x_k P x_k^T) / (r (r - 1))`` with ``S = sum_k x_k``, i.e. the mean
    over ordered pairs of distinct repetitions: two matmuls, no loop over folds.
    """
    s, n, r = x_snr.shape
    sum_sn = x_snr.sum(dim=2)
    if noise_precision is None:
        psum_sn, px_snr = sum_sn, x_snr
    else:
        psum_sn = sum_sn @ noise_precision
        px_snr = torch.einsum("snr,nm->smr", x_snr, noise_precision)
    g = torch.empty(s, s, dtype=x_snr.dtype, device=x_snr.device)
    flat_x, flat_px = x_snr.reshape(s, n * r), px_snr.reshape(s, n * r)
    spans = row_blocks(s, chunk_size)
    for i0, i1 in spans:
        torch.mm(psum_sn[i0:i1], sum_sn.T, out=g[i0:i1])
        g[i0:i1].sub_(flat_px[i0:i1] @ flat_x.T).div_(r * (r - 1))
    diag_s = torch.diagonal(g).clone()
    g.mul_(-2.0).add_(diag_s[:, None]).add_(diag_s[None, :]).div_(n)
    return mirror_rdm(g, spans)


RDM_METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "correlation": rdm_correlation,
    "euclidean": rdm_euclidean,
    "cosine": rdm_cosine,
    "crossnobis": rdm_crossnobis,
}
"""Name -> ``fn(x, chunk_size=None, **options) -> (s, s) float64 tensor``. ``crossnobis`` takes
(s, n, r) responses with repetitions; the others take (s, d) features."""


def _method(method: str) -> Callable[..., torch.Tensor]:
    if method not in RDM_METHODS:
        raise UnknownNameError("RDM method", str(method), RDM_METHODS)
    return RDM_METHODS[method]


def rdm_tensor(x: torch.Tensor, method: str = "correlation", chunk_size: int | None = None,
               **options) -> torch.Tensor:
    """The (s, s) RDM of an already validated float64 tensor (internal fast path)."""
    return _method(method)(x, chunk_size=chunk_size, **options)


def _prepare(x, method: str, device: torch.device, name: str, **options) -> tuple[torch.Tensor, dict]:
    _method(method)
    if method == "crossnobis":
        t = as_tensor(x, name, device, ndim=(3,))
        if t.shape[2] < 2:
            raise InputError(name, "(s, n, r) responses with r >= 2 repetitions for crossnobis",
                             f"shape {tuple(t.shape)}", "pass the single-trial responses, or use "
                             "rdm_method='euclidean' on the mean")
        check_features(t.mean(dim=2), name, min_stimuli=2)
        p = options.pop("noise_precision", None)
        if p is not None:
            p = as_tensor(p, "noise_precision", device, ndim=(2,))
            if tuple(p.shape) != (t.shape[1], t.shape[1]):
                raise InputError("noise_precision", f"an ({t.shape[1]}, {t.shape[1]}) precision "
                                 "matrix (one row per channel)", f"shape {tuple(p.shape)}",
                                 "estimate it from the residuals of the same channels")
            options["noise_precision"] = p
        return t, options
    t = as_tensor(x, name, device, ndim=(2,))
    check_features(t, name, min_stimuli=2)
    if options:
        raise InputError("options", f"no extra options for rdm method {method!r}",
                         f"{sorted(options)}", "remove them (noise_precision is for crossnobis)")
    return t, options


def device_of(x, device: str | torch.device | None) -> torch.device:
    """``device``, or for ``None`` the device of a tensor input (no copy), else CUDA when present."""
    if device is None and isinstance(x, torch.Tensor):
        return x.device
    return resolve_device(device)


def _numpy_input(x, device: torch.device, method: str, chunk_size: int | None,
                 options: dict) -> bool:
    """``compute_rdm`` goes the NumPy way (``_numpy_rdm``) for CPU work outside autograd with no
    ``chunk_size``: NumPy arrays, and CPU tensors that do not need a gradient."""
    return (device.type == "cpu" and chunk_size is None and not options
            and method in NUMPY_RDM_METHODS and numpy_input(x))


@sized_by(lambda x_sd, *_, **__: gram_work(x_sd))
def compute_rdm(x_sd, method: str = "correlation", device: str | torch.device | None = None,
                chunk_size: int | None = None, return_tensor: bool = False,
                **options) -> np.ndarray | torch.Tensor:
    """The representational dissimilarity matrix of one set of features.

    Parameters
    ----------
    x_sd : (s, d) features, stimuli in rows; for ``method="crossnobis"`` (s, n, r) responses of n
        channels over r >= 2 repetitions.
    method : a key of ``RDM_METHODS``: ``correlation`` (1 - Pearson r), ``euclidean`` (squared
        euclidean / d), ``cosine`` (1 - cosine) or ``crossnobis``.
    device : where to compute (``None``: the device of a tensor ``x_sd``, else CUDA when
        available).
    chunk_size : rows per block (default 4096); lower it if memory is short.
    return_tensor : return the float64 torch tensor on ``device`` instead of a numpy array, so
        that ``compare_rdms`` can take it with no host round trip.
    **options : ``noise_precision``, the (n, n) noise precision for ``crossnobis`` (default
        identity).

    Returns
    -------
    rdm_ss : (s, s) float64 numpy array (a tensor on ``device`` with ``return_tensor``),
        symmetric with a zero diagonal.
    """
    dev = device_of(x_sd, device)
    if _numpy_input(x_sd, dev, method, chunk_size, options):
        x = as_array(x_sd, "x_sd", ndim=(2,))
        check_features(x, "x_sd", min_stimuli=2)
        rdm_ss = numpy_rdm(x, method, "x_sd")
        return torch.from_numpy(rdm_ss) if return_tensor else rdm_ss
    t, options = _prepare(x_sd, method, dev, "x_sd", **options)
    rdm_ss = rdm_tensor(t, method, chunk_size, **options)
    return rdm_ss if return_tensor else rdm_ss.cpu().numpy()


@sized_by(lambda xs, *_, **__: total_gram_work(xs))
def compute_rdms(xs: Sequence | np.ndarray | torch.Tensor, method: str = "correlation",
                 device: str | torch.device | None = None, chunk_size: int | None = None,
                 return_tensor: bool = False, **options) -> np.ndarray | torch.Tensor:
    """RDMs of several feature sets over the same stimuli (e.g. every layer of a model).

    Parameters
    ----------
    xs : a (b, s, d) array, or a sequence of b arrays of shape (s, d_i) (widths may differ).
    method, device, chunk_size, return_tensor, options : as in ``compute_rdm``.

    Returns
    -------
    rdms_bss : (b, s, s) float64 numpy array (a tensor on the device with ``return_tensor``).
    """
    items = list(xs)
    if not items:
        raise InputError("xs", "at least one feature set", "an empty sequence", "pass features")
    dev = device_of(items[0], device)
    s0 = int(items[0].shape[0] if isinstance(items[0], torch.Tensor) else np.shape(items[0])[0])
    out = (torch.empty((len(items), s0, s0), dtype=torch.float64, device=dev) if return_tensor
           else np.empty((len(items), s0, s0)))
    for i, x in enumerate(items):
        s_i = int(x.shape[0] if isinstance(x, torch.Tensor) else np.shape(x)[0])
        if s_i != s0:
            raise InputError(f"xs[{i}]", f"{s0} stimuli like xs[0]", f"{s_i}",
                             "compute RDMs over the same stimuli")
        if _numpy_input(x, dev, method, chunk_size, options):
            a = as_array(x, f"xs[{i}]", ndim=(2,))
            check_features(a, f"xs[{i}]", min_stimuli=2)
            rdm_ss = numpy_rdm(a, method, f"xs[{i}]")
            out[i] = torch.from_numpy(rdm_ss) if return_tensor else rdm_ss
            continue
        t, opts = _prepare(x, method, dev, f"xs[{i}]", **dict(options))
        rdm_ss = rdm_tensor(t, method, chunk_size, **opts)
        out[i] = rdm_ss if return_tensor else rdm_ss.cpu().numpy()
    return out


@functools.lru_cache(maxsize=16)
def _triu_indices(s: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(s, 1)``, kept: rebuilding it cost ~0.3 ms a call at 92 stimuli."""
    i, j = np.triu_indices(s, 1)
    i.flags.writeable = j.flags.writeable = False
    return i, j


def upper_tri(rdm_ss: torch.Tensor) -> torch.Tensor:
    """(..., s, s) -> (..., s (s - 1) / 2): the upper triangle, row-major (``np.triu_indices``)."""
    s = rdm_ss.shape[-1]
    if rdm_ss.device.type == "cpu" and not rdm_ss.requires_grad:  # NumPy's gather: ~2x faster
        i, j = _triu_indices(s)
        return torch.from_numpy(np.ascontiguousarray(rdm_ss.numpy()[..., i, j]))
    iu = torch.triu_indices(s, s, 1, device=rdm_ss.device)
    return rdm_ss[..., iu[0], iu[1]]
