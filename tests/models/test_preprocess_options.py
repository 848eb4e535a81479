"""``preprocess:`` per model entry and ``load_model(..., preprocess=...)``; the pixel baseline;
SAM 2's square resize by default."""

from __future__ import annotations

import numpy as np
import pytest

from cortexalign.bench import load_config
from cortexalign.errors import InputError
from cortexalign.models import MEAN_STD_PRESETS, load_model


def test_load_model_replaces_settings_and_tags_the_id():
    base = load_model("sam_vit_b", untrained=True, tiny=True, img_size=64)
    m = load_model("sam_vit_b", untrained=True, tiny=True, img_size=64,
                   preprocess={"resize": "stretch", "mean": "imagenet"})
    assert type(m.preprocess) is type(base.preprocess)
    assert m.preprocess.resize == "stretch" and m.preprocess.size == (64, 64)
    assert (m.preprocess.mean, m.preprocess.std) == MEAN_STD_PRESETS["imagenet"]
    assert m.model_id.startswith(base.model_id + "+pre(") and m.model_id != base.model_id
    img = np.random.default_rng(0).integers(0, 256, (30, 50), dtype=np.uint8)
    x = m.preprocess([img])[0]
    # stretch: the whole image fills the square (no zero padding at the bottom)
    assert x.shape == (3, 64, 64) and float(x[:, -1].abs().sum()) > 0


@pytest.mark.parametrize("bad", [{"resize": "squash"}, {"scale": 2}, {"mean": "sam"},
                                 {"mean": "imagenet", "std": [1, 1, 1]}])
def test_bad_preprocess_is_refused(bad):
    with pytest.raises(InputError):
        load_model("pixels", preprocess=bad)


def test_config_preprocess_key_keeps_old_hashes():
    base = {"stimuli": {"source": "kriegeskorte92"}, "neural": [{"source": "kriegeskorte92.human_IT"}],
            "metrics": [{"name": "rsa"}]}
    plain = load_config(dict(base, models=[{"name": "pixels"}]))
    empty = load_config(dict(base, models=[{"name": "pixels", "preprocess": {}}]))
    set_ = load_config(dict(base, models=[{"name": "pixels", "preprocess": {"size": 32}}]))
    assert plain.config_hash() == empty.config_hash() != set_.config_hash()


def test_pixels_is_the_grey_image():
    m = load_model("pixels", size=4)
    img = np.zeros((8, 12, 3), dtype=np.uint8)
    img[..., 0] = 255  # pure red: grey is the channel mean, 1/3, in [0, 1] (no normalisation)
    out = m.forward_layers(m.preprocess([img]), ["pixels"])["pixels"]
    assert tuple(out.shape) == (1, 1, 4, 4)
    np.testing.assert_allclose(out.numpy(), 1 / 3, atol=1e-6)
    rgb = load_model("pixels", size=4, grey=False)
    assert tuple(rgb.forward_layers(rgb.preprocess([img]), ["pixels"])["pixels"].shape) == (
        1, 3, 4, 4)


def test_sam2_resizes_to_a_square_by_default():
    m = load_model("sam2_hiera_t", untrained=True, tiny=True)
    assert m.preprocess.resize == "stretch"
    m1 = load_model("sam2_hiera_t", untrained=True, tiny=True,
                    preprocess={"resize": "longest_side_pad"})
    assert m1.preprocess.resize == "longest_side_pad"
