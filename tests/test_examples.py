"""Every script in examples/ runs offline as a user would run it and writes what it promises.

Each example runs in a subprocess (its own interpreter, the working directory a temporary folder)
with ``--out``; the test checks the exit status, that exactly the expected files were written,
non-empty (PNGs with the PNG signature), and the claim the script's docstring makes where it
prints one (the planted layer wins; saved features read back identical; a network against itself
has a unit diagonal and linear CKA ignores rotations; the searchlight peak lies in the planted
sphere and survives FDR). NIfTI files must be gzip files. A new example without an entry in
``EXPECTED`` fails ``test_every_example_is_listed``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

EXPECTED = {
    "01_rsa_layers_vs_it": ["rsa_layers.csv", "rsa_layers.png"],
    "02_cka_and_encoding": ["cka_encoding.csv", "cka_encoding.png"],
    "03_attention_maps": ["attention_sam_vit_b_tiny.png", "attention_vit_tiny.png"],
    "04_variance_partitioning": ["components.csv", "variance_partitioning.png"],
    "05_extract_and_save": ["features.mat", "features.npz", "rdms.png"],
    "06_layer_similarity": ["cka_linear.png", "layer_similarity.csv", "rsa.png"],
    "07_searchlight": ["betas.nii.gz", "mask.nii.gz", "searchlight_q.nii.gz",
                       "searchlight_rho.nii.gz", "searchlight_slice.png"],
    "08_alignment_patterns": ["discriminability.csv", "patterns.csv", "patterns.png",
                              "regions.npz"],
}

# what the example says it shows, as printed by it
CLAIMS = {
    "02_cka_and_encoding": [f"{m}: best layer blocks.3 (planted: blocks.3)"
                            for m in ("cka_linear", "cka_debiased", "ridge_r")],
    "05_extract_and_save": ["values identical: True; max |RDM - direct RDM| = 0.0e+00"],
    "06_layer_similarity": ["cka_linear, A vs A: diagonal is 1: True",
                            "rsa, A vs A: diagonal is 1: True",
                            "cka_linear, A vs its layers randomly rotated: equals A vs A: True"],
    "07_searchlight": ["peak inside the planted sphere: True",
                       "planted centre survives FDR: True"],
}


def test_every_example_is_listed():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_example_runs_and_writes_its_outputs(stem, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}  # no network, no display
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{stem}.py"), "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{stem} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    assert sorted(p.name for p in out.iterdir()) == EXPECTED[stem]
    for name in EXPECTED[stem]:
        data = (out / name).read_bytes()
        assert data, f"{stem} wrote an empty {name}"
        if name.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
        if name.endswith(".gz"):
            assert data[:2] == b"\x1f\x8b", f"{name} is not gzip-compressed"
    for claim in CLAIMS.get(stem, []):
        assert claim in proc.stdout, f"{stem} did not print {claim!r}:\n{proc.stdout}"
    assert not (tmp_path / "examples-out").exists(), "--out was ignored"
