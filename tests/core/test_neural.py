from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cortexalign.errors import InputError
from cortexalign.neural import (
    RDMSet,
    align_ids,
    load_neural,
    load_responses_csv,
    load_responses_netcdf,
    make_responses,
)


def test_make_responses_labels_and_coords(rng):
    vals = rng.normal(size=(4, 3, 2))
    da = make_responses(vals, list("abcd"), coords={"area": ["VISp", "VISl", "VISp"]})
    assert da.dims == ("stimulus", "neuroid", "repetition")
    assert list(da.sel(stimulus="c").area.values) == ["VISp", "VISl", "VISp"]
    np.testing.assert_array_equal(da.values, vals)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_responses_are_refused(rng, bad):
    vals = rng.normal(size=(3, 2))
    vals[1, 1] = bad
    with pytest.raises(InputError, match=r"NaN/Inf.*\(1, 1\)"):
        make_responses(vals, list("abc"))


def test_wrong_id_count_names_parameter(rng):
    with pytest.raises(InputError, match="stimulus_ids"):
        make_responses(rng.normal(size=(3, 2)), ["a", "b"])


def test_align_ids_reports_both_sides():
    assert list(align_ids(["a", "b", "c"], ["c", "a", "b"])) == [2, 0, 1]
    with pytest.raises(InputError) as err:
        align_ids(["a", "b", "c"], ["a", "b", "blank"])
    msg = str(err.value)
    assert "'blank'" in msg and "'c'" in msg


def test_rdmset_validation(rng):
    x = rng.normal(size=(5, 3))
    rdm = ((x[:, None] - x[None]) ** 2).sum(-1)
    rs = RDMSet(rdm, list("abcde"))
    assert rs.n_rdms == 1 and rs.upper().shape == (1, 10)
    with pytest.raises(InputError, match="symmetric"):
        RDMSet(rdm + np.triu(np.ones((5, 5))), list("abcde"))
    with pytest.raises(InputError, match="constant"):
        RDMSet(np.ones((5, 5)) - np.eye(5), list("abcde"))
    with pytest.raises(InputError, match="5 ids"):
        RDMSet(rdm, list("abcd"))


def test_rdmset_reorder_is_a_permutation(rng):
    x = rng.normal(size=(4, 3))
    rdm = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    rs = RDMSet(rdm, list("abcd")).reorder(list("dcba"))
    np.testing.assert_allclose(rs.rdms[0], rdm[::-1, ::-1])


def test_bundled_human_it_has_subjects_and_matches_shared(shared_data):
    rs = load_neural("kriegeskorte92.human_IT")
    ref = np.load(shared_data / "kriegeskorte92" / "kriegeskorte92.npz")
    assert rs.rdms.shape == (8, 92, 92)
    np.testing.assert_allclose(rs.rdms[3], ref["rdm_human_IT_subj_sess"][1, 1])
    assert list(rs.descriptors["subject"]) == [1, 1, 2, 2, 3, 3, 4, 4]


def test_csv_and_netcdf_round_trip(tmp_path, rng):
    vals = rng.normal(size=(3, 2))
    (tmp_path / "r.csv").write_text("stimulus_id,c1,c2\n" + "\n".join(
        f"s{i},{float(vals[i, 0])!r},{float(vals[i, 1])!r}" for i in range(3)))
    da = load_responses_csv(tmp_path / "r.csv")
    np.testing.assert_array_equal(da.values, vals)
    assert list(da.neuroid.values) == ["c1", "c2"]
    da.to_netcdf(tmp_path / "r.nc")
    back = load_responses_netcdf(tmp_path / "r.nc")
    xr.testing.assert_equal(back, da)


def test_unknown_dataset_suggests():
    with pytest.raises(InputError, match="kriegeskorte92"):
        load_neural("kriegeskorte92.human_it")
