"""The seed paper's selection: equal excitatory / inhibitory neurons at cluster centres."""

from __future__ import annotations

import numpy as np
import pytest

from cortexalign.bench import load_config
from cortexalign.errors import InputError
from cortexalign.neural import make_responses, select_cluster_centres


def _responses(seed=0):
    """Three response types per class (20, 5 and 5 neurons): the centres should cover all three,
    where taking the first or a random 6 would mostly take the big type."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(6, 30))
    kinds = np.r_[np.repeat([0, 1, 2], [20, 5, 5]), np.repeat([3, 4, 5], [20, 5, 5])]
    r = protos[kinds].T[:, :, None] + 0.1 * rng.normal(size=(30, 60, 4))
    cre = np.r_[["Cux2-CreERT2"] * 30, ["Sst-IRES-Cre"] * 30]
    cls = np.r_[["excitatory"] * 30, ["inhibitory"] * 30]
    da = make_responses(r, [f"s{i}" for i in range(30)],
                        coords={"cre_line": cre, "cell_class": cls, "kind": kinds})
    return da


def test_equal_classes_and_every_cluster_covered():
    da = _responses()
    sel = select_cluster_centres(da, 6, embedding="pca", seed=0)
    assert list(sel["cell_class"].values) == ["excitatory"] * 3 + ["inhibitory"] * 3
    assert sorted(sel["kind"].values.tolist()) == [0, 1, 2, 3, 4, 5]
    assert len(set(sel["neuroid"].values.tolist())) == 6


def test_bad_requests_are_refused():
    da = _responses()
    with pytest.raises(InputError, match="n"):
        select_cluster_centres(da, 7, embedding="pca")
    with pytest.raises(InputError, match="at most twice"):
        select_cluster_centres(da, 62, embedding="pca")
    with pytest.raises(InputError, match="embedding"):
        select_cluster_centres(da, 6, embedding="tsne")


def test_umap_missing_is_named_or_used():
    da = _responses()
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="umap-learn"):
            select_cluster_centres(da, 6)
    else:
        assert select_cluster_centres(da, 6).sizes["neuroid"] == 6


def test_config_select_keeps_old_hashes():
    base = {"stimuli": {"source": "kriegeskorte92"}, "models": [{"name": "pixels"}],
            "metrics": [{"name": "rsa"}]}
    target = {"source": "kriegeskorte92.human_IT", "select": {"min_reliability": 0.1}}
    plain = load_config(dict(base, neural=[target]))
    chosen = load_config(dict(base, neural=[dict(target, select={"min_reliability": 0.1,
                                                               "cluster_centres": 100})]))
    assert plain.config_hash() != chosen.config_hash()
    dump = plain.model_dump(mode="json")["neural"][0]["select"]
    assert dump["cluster_centres"] is None  # the hash drops the unset keys
