"""The on-device path: compute_rdm / compare_rdms on torch tensors, with no host round trip."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch

from cortexalign.metrics import compare_rdms, compute_rdm, compute_rdms, score
from cortexalign.neural import RDMSet

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["correlation", "euclidean"])
def test_rdm_tensor_then_compare_matches_rsatoolbox(device, method, rng):
    x = rng.normal(size=(25, 40)) + rng.normal(size=(25, 1))
    target = rng.normal(size=(25, 6))
    rdm_t = compute_rdm(torch.as_tensor(x, device=device), method, return_tensor=True)
    target_t = compute_rdm(torch.as_tensor(target, device=device), "euclidean", return_tensor=True)
    assert isinstance(rdm_t, torch.Tensor) and rdm_t.device.type == device
    assert rdm_t.dtype == torch.float64 and rdm_t.shape == (25, 25)
    sim_t = compare_rdms(rdm_t, target_t, "spearman", return_tensor=True)
    assert isinstance(sim_t, torch.Tensor) and sim_t.device.type == device
    ref_rdm = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=method)
    ref_target = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(target), method="euclidean")
    np.testing.assert_allclose(rdm_t.cpu().numpy(), ref_rdm.get_matrices()[0], atol=1e-9)
    ref = rsatoolbox.rdm.compare(ref_rdm, ref_target, "spearman")[0, 0]
    np.testing.assert_allclose(float(sim_t[0, 0]), ref, atol=1e-6)
    # numpy in and out gives the same numbers as tensors in and out
    np.testing.assert_array_equal(compute_rdm(x, method, device=device), rdm_t.cpu().numpy())
    np.testing.assert_array_equal(compare_rdms(rdm_t, target_t), sim_t.cpu().numpy())


def test_tensor_inputs_stay_on_their_device_by_default(rng):
    x = torch.as_tensor(rng.normal(size=(10, 7)))
    assert compute_rdm(x, return_tensor=True).device == x.device
    sim = compare_rdms(compute_rdm(x, return_tensor=True), compute_rdm(x + 1e-3 * x**2, return_tensor=True),
                       "pearson")
    assert isinstance(sim, np.ndarray) and sim.shape == (1, 1)


def test_compute_rdms_tensor_stack_equals_numpy(rng):
    xs = [rng.normal(size=(12, d)) for d in (3, 9)]
    out_t = compute_rdms([torch.as_tensor(x) for x in xs], return_tensor=True)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (2, 12, 12)
    np.testing.assert_array_equal(out_t.numpy(), compute_rdms(xs, device="cpu"))


def test_rsa_metric_on_a_tensor_equals_numpy(rng):
    x = rng.normal(size=(15, 20))
    rdms = np.stack([compute_rdm(rng.normal(size=(15, 4)), device="cpu") for _ in range(3)])
    target = RDMSet(rdms, [f"s{i}" for i in range(15)], descriptors={"subject": [0, 1, 2]})
    a = score("rsa", x, target, device="cpu")
    b = score("rsa", torch.as_tensor(x), target)
    assert a.value == pytest.approx(b.value, abs=1e-12)
    np.testing.assert_allclose(a.extra["per_rdm"], b.extra["per_rdm"], atol=1e-12)
