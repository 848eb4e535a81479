"""A planted sparse dictionary for the SAE tests."""

from __future__ import annotations

import numpy as np


def planted_dictionary(n: int, d: int = 32, m: int = 64, s: int = 3, seed: int = 0):
    """x = sum of s atoms (coefficients in [0.5, 2]) of a random unit-norm (m, d) dictionary."""
    g = np.random.default_rng(seed)
    atoms_md = g.standard_normal((m, d))
    atoms_md /= np.linalg.norm(atoms_md, axis=1, keepdims=True)
    idx_ns = np.argsort(g.random((n, m)), axis=1)[:, :s]
    coef_ns = g.uniform(0.5, 2.0, (n, s))
    x_nd = np.einsum("ns,nsd->nd", coef_ns, atoms_md[idx_ns])
    return x_nd.astype(np.float32), atoms_md
