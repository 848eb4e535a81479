"""The seed paper's neuron selection: as many excitatory as inhibitory neurons, each the neuron
closest to a cluster centre of an embedding of the response profiles.

Jalil, Qazi & Iqbal (2025) picked 1,000 neurons, 500 from excitatory Cre lines and 500 from
inhibitory ones, as cluster centres in a UMAP embedding, so the selection spans the kinds of
response in each class rather than the most numerous. Here, per class: each neuron's mean
response over repetitions is z-scored over stimuli, embedded in ``n_components`` dimensions
(``embedding="umap"``: umap-learn, an optional dependency; ``"pca"``: principal components, no
extra package), clustered by k-means (``scipy.cluster.vq.kmeans2``, k = half the total) and the
neuron nearest each centre kept (one per cluster, no repeats).
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from cortexalign.errors import InputError

__all__ = ["select_cluster_centres", "EMBEDDINGS"]

EMBEDDINGS = ("umap", "pca")


def _profiles(responses: xr.DataArray) -> np.ndarray:
    """(n, s) z-scored mean responses (NaN stimuli filled with the neuron's mean)."""
    r = responses.values.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r_sn = np.nanmean(r, axis=2) if r.ndim == 3 else r
        r_sn = np.where(np.isfinite(r_sn), r_sn, np.nanmean(r_sn, axis=0, keepdims=True))
    x = r_sn.T
    sd = x.std(1, keepdims=True)
    return (x - x.mean(1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def _embed(x_nd: np.ndarray, embedding: str, n_components: int, seed: int) -> np.ndarray:
    if embedding == "pca":
        xc = x_nd - x_nd.mean(0)
        u, s, _ = np.linalg.svd(xc, full_matrices=False)
        return u[:, :n_components] * s[:n_components]
    try:
        import umap
    except ImportError:
        raise InputError("embedding", "umap-learn installed for embedding='umap'",
                         "no module 'umap'", "pip install umap-learn, or pass "
                         "embedding='pca' (principal components, no extra package)") from None
    n_neighbors = min(15, len(x_nd) - 1)
    return umap.UMAP(n_components=n_components, n_neighbors=n_neighbors,
                     random_state=seed).fit_transform(x_nd)


def _centres(x_nd: np.ndarray, k: int, embedding: str, n_components: int, seed: int
             ) -> np.ndarray:
    """Indices of the k neurons nearest the k-means centres of their embedding (distinct)."""
    from scipy.cluster.vq import kmeans2

    emb = _embed(x_nd, embedding, n_components, seed)
    centres, _ = kmeans2(emb, k, seed=seed, minit="++")
    d_kn = ((centres[:, None, :] - emb[None]) ** 2).sum(-1)
    chosen: list[int] = []
    for row in d_kn:  # nearest neuron not taken yet
        order = np.argsort(row)
        chosen.append(int(next(i for i in order if i not in chosen)))
    return np.asarray(chosen)


def select_cluster_centres(responses: xr.DataArray, n: int = 1000, *,
                           embedding: str = "umap", n_components: int = 2,
                           seed: int = 0) -> xr.DataArray:
    """``n`` neurons, half excitatory and half inhibitory, chosen as cluster centres.

    Parameters
    ----------
    responses : (stimulus, neuroid[, repetition]) with a ``cell_class`` neuroid coordinate (the
        Allen loaders add it from the Cre line).
    n : total neurons; even, at most twice the smaller class.
    embedding : ``"umap"`` (the paper's; needs umap-learn) or ``"pca"``.
    n_components : embedding dimensions (2 as in the paper).
    seed : seed of the embedding and of k-means.

    Returns
    -------
    ``responses`` restricted to the chosen neurons (excitatory first, then inhibitory).
    """
    if embedding not in EMBEDDINGS:
        raise InputError("embedding", " or ".join(EMBEDDINGS), repr(embedding),
                         "pass embedding='umap' (the paper's) or 'pca'")
    if "cell_class" not in responses.coords:
        raise InputError("responses", "a cell_class neuroid coordinate", "none",
                         "load Allen data (cell_class comes from the Cre line)")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2 or n % 2:
        raise InputError("n", "an even number of neurons >= 2", repr(n), "e.g. n=1000")
    classes = responses["cell_class"].values.astype(str)
    picks = []
    for cls in ("excitatory", "inhibitory"):
        idx = np.flatnonzero(classes == cls)
        if len(idx) < n // 2:
            raise InputError("n", f"at most twice the smaller class ({2 * len(idx)}: "
                             f"{len(idx)} {cls} neurons)", repr(n), f"pass n={2 * len(idx)}")
        x = _profiles(responses.isel(neuroid=idx))
        picks.append(idx[_centres(x, n // 2, embedding, n_components, seed)])
    return responses.isel(neuroid=np.concatenate(picks))
