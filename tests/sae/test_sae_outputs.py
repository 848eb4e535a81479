"""Files of an SAE-BrainMap run: tables, NIfTI maps on the responses' grid, fsaverage values."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from cortexalign.neural import make_responses
from cortexalign.sae.match import match_units_to_voxels, voxel_dictionary
from cortexalign.sae.objectives import SAEMetrics
from cortexalign.sae.outputs import write_outputs
from cortexalign.sae.pipeline import BrainMapResult


def _result(coords: dict, attrs: dict | None = None, n: int = 5):
    g = np.random.default_rng(0)
    units = {"a": g.random((40, 6)), "b": g.random((40, 4))}
    vox = make_responses(g.standard_normal((40, n)), [f"s{i}" for i in range(40)], coords=coords)
    vox.attrs.update(attrs or {})
    match = match_units_to_voxels(units, vox)
    metrics = SAEMetrics(**{f: 0.0 for f in SAEMetrics.__dataclass_fields__})
    res = BrainMapResult({"a": metrics, "b": metrics}, units, match, voxel_dictionary(match),
                         np.argmax(match.max_r_ln, 0), {"V1": 0.5})
    return res, vox


def test_volume_maps_hold_best_r_and_one_based_layer(tmp_path):
    ijk = np.array([[0, 0, 0], [1, 2, 0], [2, 1, 1], [0, 2, 1], [2, 2, 0]])
    affine = np.diag([1.8, 1.8, 1.8, 1])
    res, vox = _result({"x": ijk[:, 0], "y": ijk[:, 1], "z": ijk[:, 2], "roi": ["V1"] * 5},
                       {"affine": affine.tolist(), "shape": [3, 3, 2], "space": "func1pt8mm"})
    files = write_outputs(res, vox, tmp_path)
    assert "surface_best_r" not in files  # subject space: no projection onto fsaverage
    r = nib.load(files["volume_best_r"])
    assert np.allclose(r.affine, affine) and r.shape == (3, 3, 2)
    np.testing.assert_allclose(np.asarray(r.dataobj)[tuple(ijk.T)], res.dictionary.r_n, rtol=1e-6)
    layer = np.asarray(nib.load(files["volume_best_layer"]).dataobj)
    np.testing.assert_array_equal(layer[tuple(ijk.T)], res.best_layer_n + 1)
    assert layer.sum() == (res.best_layer_n + 1).sum()  # 0 everywhere else
    assert pd.read_csv(files["roi_rsa"]).to_dict("list") == {"roi": ["V1"], "spearman_rho": [0.5]}
    table = pd.read_csv(files["dictionary"])
    assert table["unit"].tolist() == res.dictionary.unit_n.tolist()


def test_fsaverage_values_are_painted_at_their_vertices(tmp_path, monkeypatch):
    from cortexalign.neural.fmri import surface

    painted = {}
    monkeypatch.setattr(surface, "plot_surface_values",
                        lambda surf, path, *a, **k: painted.setdefault(path.name, surf) and path)
    hemi, vertex = ["lh", "lh", "rh", "rh", "rh"], [0, 10241, 7, 20000, 3]
    res, vox = _result({"hemi": hemi, "vertex": vertex, "roi": ["V1"] * 5})
    write_outputs(res, vox, tmp_path)
    surf = painted["surface_best_r.png"]
    assert len(surf["left"]) == len(surf["right"]) == 10242  # fsaverage5
    r = res.dictionary.r_n
    np.testing.assert_allclose(surf["left"][[0, 10241]], r[:2], rtol=1e-6)
    np.testing.assert_allclose(surf["right"][[7, 3]], r[[2, 4]], rtol=1e-6)
    assert np.isfinite(surf["right"]).sum() == 2  # vertex 20000 lies beyond fsaverage5
    np.testing.assert_array_equal(painted["surface_best_layer.png"]["right"][[7, 3]],
                                  res.best_layer_n[[2, 4]] + 1)


def test_vertex_values_need_one_coordinate_per_value():
    from cortexalign.errors import InputError
    from cortexalign.neural.fmri import vertex_values_to_mesh

    with pytest.raises(InputError, match="one per value"):
        vertex_values_to_mesh(np.ones(3), ["lh"] * 2, [0, 1, 2])


def test_outputs_are_written_atomically_and_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    ijk = np.array([[0, 0, 0], [1, 2, 0], [2, 1, 1], [0, 2, 1], [2, 2, 0]])
    res, vox = _result({"x": ijk[:, 0], "y": ijk[:, 1], "z": ijk[:, 2], "roi": ["V1"] * 5},
                       {"affine": np.eye(4).tolist(), "shape": [3, 3, 2], "space": "func1pt8mm"})
    files = write_outputs(res, vox, tmp_path / "ok")
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == sorted(
        p.name for p in files.values())  # no temporary file left beside them
    real = pd.DataFrame.to_csv

    def half_then_fail(self, path, *args, **kwargs):  # a write killed half way
        real(self.head(1), path, *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(res, vox, tmp_path / "failed")
    assert list((tmp_path / "failed").iterdir()) == []  # neither half a table nor a temp file


def test_subject_space_volumes_are_drawn_on_the_subjects_own_surfaces(tmp_path, monkeypatch):
    pytest.importorskip("nilearn")
    from cortexalign.neural.fmri import surface
    from cortexalign.neural.fmri.subject_surface import SubjectSurfaces
    from cortexalign.studies.sae_brainmap._nsd_layout import write_subject_surfaces

    write_subject_surfaces(tmp_path / "nsd", (20, 24, 20), subdivisions=4)
    painted = {}

    def capture(surf, path, mesh, *a, **k):
        painted[path.name] = (surf, mesh)
        return path

    monkeypatch.setattr(surface, "plot_surface_values", capture)
    cube = np.argwhere(np.ones((3, 3, 3)))
    ijk = np.concatenate([cube, cube + [17, 21, 17]])  # two corners of the grid
    res, vox = _result({"x": ijk[:, 0], "y": ijk[:, 1], "z": ijk[:, 2], "roi": ["V1"] * 54},
                       {"affine": np.diag([1.8, 1.8, 1.8, 1]).tolist(), "shape": [20, 24, 20],
                        "space": "func1pt8mm",
                        "freesurfer": str(tmp_path / "nsd/nsddata/freesurfer/subj01")}, n=54)
    files = write_outputs(res, vox, tmp_path / "out")
    assert {"volume_best_r", "surface_best_r", "surface_best_layer"} <= set(files)
    surf, mesh = painted["surface_best_r.png"]
    assert isinstance(mesh, SubjectSurfaces) and len(surf["left"]) == 2562
    for hemi in ("left", "right"):  # a few vertices at the corner voxels, the rest blank
        assert 0 < np.isfinite(surf[hemi]).sum() < 100
    r = res.dictionary.r_n
    left = surf["left"][np.isfinite(surf["left"])]
    assert (left >= r[:27].min() - 1e-6).all() and (left <= r[:27].max() + 1e-6).all()
    layers, _ = painted["surface_best_layer.png"]
    got = np.concatenate([v[np.isfinite(v)] for v in layers.values()])
    assert set(got) <= set(res.best_layer_n + 1.0)  # labels, never averaged
