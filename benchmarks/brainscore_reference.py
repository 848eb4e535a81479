"""Brain-Score's numbers on fixed arrays, rebuilt with plain scikit-learn / SciPy, for the parity
tests (tests/metrics/test_brainscore_protocol.py pins what this prints).

    python benchmarks/brainscore_reference.py

brainscore-vision 2.4.2 does not install beside our pins (it requires numpy<2 and
scikit-learn<1.6), so its protocol is rebuilt here step by step from its source
(metrics/regression_correlation/metric.py, metric_helpers/transformations.py,
metrics/internal_consistency/ceiling.py, metrics/rdm/metric.py, metrics/cka/metric.py), with
no cortexalign code: 10 StratifiedShuffleSplit splits (train 0.9, random_state 1) over
``object_name``; PLSRegression(25, scale=False) / Ridge(alpha=1) fitted on the training
stimuli of the repetition-averaged responses; scipy.stats.pearsonr per neuroid on the test
stimuli; median over neuroids, mean and SEM (std / sqrt(10)) over splits; the ceiling from 10
ShuffleSplit halvings of the repetitions (train 0.5, random_state 1), Pearson per neuroid,
Spearman-Brown n=2, median, mean. Where brainscore-vision can be imported (its own
environment), ``--with-brainscore`` prints its numbers beside these.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import scipy.stats
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit


def fixed_arrays(seed: int = 0):
    """92 stimuli (4 object categories x 23 images) x 200 features; 100 neuroids x 10 repetitions whose
    mean depends linearly on 20 of the features, plus trial noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((92, 200))
    w = rng.standard_normal((20, 100)) / math.sqrt(20)
    signal = x[:, :20] @ w
    reps = signal[:, :, None] + 1.5 * rng.standard_normal((92, 100, 10))
    objects = np.repeat([f"object{i}" for i in range(4)], 23)
    return x, reps, objects


def regression_score(x, reps, objects, regression):
    y = reps.mean(2)
    per_split = []
    for tr, te in StratifiedShuffleSplit(n_splits=10, train_size=0.9,
                                         random_state=1).split(np.zeros(len(x)), objects):
        model = (PLSRegression(n_components=25, scale=False) if regression == "pls"
                 else Ridge(alpha=1))
        pred = model.fit(x[tr], y[tr]).predict(x[te])
        rs = [scipy.stats.pearsonr(pred[:, j], y[te, j])[0] for j in range(y.shape[1])]
        per_split.append(np.median(rs))
    per_split = np.array(per_split)
    return per_split.mean(), per_split.std() / math.sqrt(len(per_split))


def ceiling(reps):
    values = []
    for a, b in ShuffleSplit(n_splits=10, train_size=0.5,
                             random_state=1).split(np.zeros(reps.shape[2])):
        h1, h2 = reps[:, :, a].mean(2), reps[:, :, b].mean(2)
        rs = np.array([scipy.stats.pearsonr(h1[:, j], h2[:, j])[0] for j in range(h1.shape[1])])
        values.append(np.median(2 * rs / (1 + rs)))
    return float(np.mean(values))


def rdm_similarity(x, y):
    iu = np.triu_indices(len(x), 1)
    return scipy.stats.spearmanr((1 - np.corrcoef(x))[iu], (1 - np.corrcoef(y))[iu])[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.parse_args()
    x, reps, objects = fixed_arrays()
    c = ceiling(reps)
    for reg in ("pls", "ridge"):
        center, error = regression_score(x, reps, objects, reg)
        print(f"{reg:6s} score {center:.10f}  error {error:.10f}  ceiling {c:.10f}  "
              f"ceiled {(center / c) ** 2:.10f}")
    print(f"rsa    score {rdm_similarity(x, reps.mean(2)):.10f}")


if __name__ == "__main__":
    main()
