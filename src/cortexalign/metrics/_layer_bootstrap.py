"""Bootstrap intervals over stimuli for every entry of a layer-by-layer CKA matrix.

Each bootstrap sample draws the s stimuli with replacement (``stats.bootstrap_indices``: a seed
gives the draws of every other bootstrap of the package) and recomputes all (L_a, L_b) entries
with ``_cka_boot.resampled_cka_pairs`` (copies of one stimulus are never paired, so the samples
scatter around the estimate instead of above it). Memory:
the (L_a + L_b) Grams, 8 (L_a + L_b) s^2 bytes, twice during a sample. Time: about 1 s per
resample for 12 layers against themselves over 1,000 stimuli on 2 busy CPU cores (the point
estimate: 0.5-0.9 s).

The interval of each entry is the percentile interval of its finite samples. CKA only: RSA on
resampled stimuli needs its pairs of copies left out of both RDMs, which ``score(..., "rsa",
n_bootstrap=...)`` does for one layer pair at a time.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from cortexalign.errors import InputError
from cortexalign.metrics._cka_boot import resampled_cka_pairs
from cortexalign.rdm import mm_nt

__all__ = ["check_bootstrap", "bootstrap_layer_cka"]


def check_bootstrap(metric: str, n_bootstrap, seed, ci_level) -> None:
    """``InputError`` for a bootstrap request ``layer_similarity`` cannot honour."""
    from cortexalign.metrics._api import check_count_options  # _api imports the metrics modules
    from cortexalign.stats import check_ci_level  # stats builds on metrics

    check_count_options({"n_bootstrap": n_bootstrap, "seed": seed})
    check_ci_level(ci_level)
    if n_bootstrap and metric == "rsa":
        raise InputError("n_bootstrap", "0 for metric 'rsa' (intervals are for the CKA measures)",
                         repr(n_bootstrap), "use a CKA metric, or bootstrap one layer pair with "
                         "score('rsa', features, rdms, n_bootstrap=...), which leaves out the "
                         "pairs of copies of one stimulus")


def bootstrap_layer_cka(metric: str, xs_a: list[torch.Tensor], xs_b: list[torch.Tensor] | None,
                        options: dict, n_bootstrap: int, seed: int,
                        ci_level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(samples (B, L_a, L_b), ci_low, ci_high (L_a, L_b)) of CKA ``metric`` over stimulus
    resamples; ``xs_b=None``: A against itself."""
    from cortexalign.stats import bootstrap_indices  # stats builds on metrics

    s = xs_a[0].shape[0]
    grams_a = [mm_nt(x, x) for x in xs_a]
    grams_b = grams_a if xs_b is None else [mm_nt(y, y) for y in xs_b]
    samples = []
    for idx in bootstrap_indices(s, n_bootstrap, seed, xs_a[0].device):
        c_s = torch.bincount(idx, minlength=s).to(torch.float64)
        samples.append(resampled_cka_pairs(grams_a, grams_b, c_s, metric.removeprefix("cka_"),
                                           options.get("sigma_frac", 1.0)).cpu())
    samples_bab = torch.stack(samples).numpy()
    finite = np.where(np.isfinite(samples_bab), samples_bab, np.nan)
    q = (1.0 - float(ci_level)) / 2.0
    with warnings.catch_warnings():  # an entry with no finite sample gets NaN bounds, quietly
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        lo, hi = np.nanquantile(finite, [q, 1.0 - q], axis=0)
    return samples_bab, lo, hi
