"""Preprocess: geometry of each resize mode against explicit computations, normalisation, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cortexalign.errors import InputError
from cortexalign.models import Preprocess

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _norm(x_b3hw: torch.Tensor) -> torch.Tensor:
    return (x_b3hw - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_stretch_is_interpolate_then_normalise(rng):
    img = rng.integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    pre = Preprocess(size=(16, 20), mean=MEAN, std=STD, resize="stretch", interpolation="bilinear")
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ref = F.interpolate(x, size=(16, 20), mode="bilinear", antialias=True, align_corners=False)
    out = pre([img])
    assert out.shape == (1, 3, 16, 20) and out.dtype == torch.float32
    torch.testing.assert_close(out, _norm(ref.clamp(0, 1)))


def test_center_crop_without_resize_takes_the_middle(rng):
    """crop_pct = 16/20 on a 20x30 image: no resize (shorter side already 20), crop rows 2..17."""
    img = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    pre = Preprocess(size=(16, 16), mean=MEAN, std=STD, crop_pct=16 / 20)
    out = pre([img])
    ref = torch.from_numpy(img[2:18, 7:23]).permute(2, 0, 1)[None].float() / 255
    torch.testing.assert_close(out, _norm(ref))


def test_center_crop_scales_shorter_side(rng):
    img = rng.integers(0, 256, size=(40, 80, 3), dtype=np.uint8)
    pre = Preprocess(size=(16, 16), mean=MEAN, std=STD, crop_pct=0.8, interpolation="nearest")
    # shorter side 40 -> floor(16 / 0.8) = 20, longer 80 -> 40; crop rows 2..17, cols 12..27
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ref = F.interpolate(x, size=(20, 40), mode="nearest")[:, :, 2:18, 12:28]
    torch.testing.assert_close(pre([img]), _norm(ref))


def test_longest_side_pad_pads_bottom_right_with_zeros(rng):
    img = rng.integers(0, 256, size=(20, 40, 3), dtype=np.uint8)
    pre = Preprocess(size=(32, 32), mean=MEAN, std=STD, resize="longest_side_pad",
                     interpolation="bilinear")
    out = pre([img])
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ref = F.interpolate(x, size=(16, 32), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(out[:, :, :16], _norm(ref.clamp(0, 1)))
    assert torch.count_nonzero(out[:, :, 16:]) == 0


def test_grayscale_is_replicated(rng):
    gray = rng.integers(0, 256, size=(20, 20), dtype=np.uint8)
    pre = Preprocess(size=(20, 20), mean=(0.5,) * 3, std=(0.5,) * 3)
    out_gray = pre([gray, gray[:, :, None]])
    out_rgb = pre([np.repeat(gray[:, :, None], 3, axis=2)])
    torch.testing.assert_close(out_gray, out_rgb.expand(2, -1, -1, -1))


def test_key_is_stable_and_distinguishes():
    a = Preprocess(size=(224, 224), mean=MEAN, std=STD, crop_pct=0.875)
    assert a.key() == Preprocess(size=[224, 224], mean=list(MEAN), std=STD, crop_pct=0.875).key()
    assert a.key() != Preprocess(size=(224, 224), mean=MEAN, std=STD, crop_pct=0.9).key()
    assert a.key() != Preprocess(size=(224, 224), mean=MEAN, std=STD, crop_pct=0.875,
                                 resize="stretch").key()


@pytest.mark.parametrize("kwargs", [
    {"resize": "squash"}, {"interpolation": "lanczos"}, {"crop_pct": 0.0}, {"std": (1, 0, 1)},
    {"mean": (0.5, 0.5)}, {"size": (0, 4)},
])
def test_bad_config_raises(kwargs):
    base = {"size": (8, 8), "mean": MEAN, "std": STD}
    with pytest.raises(InputError):
        Preprocess(**{**base, **kwargs})


def test_bad_images_raise(rng):
    pre = Preprocess(size=(8, 8), mean=MEAN, std=STD)
    img = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="wrap a single image"):
        pre(img)
    with pytest.raises(InputError):
        pre([])
    with pytest.raises(InputError):
        pre([np.zeros((8, 8, 5), np.uint8)])


@pytest.mark.parametrize("resize", ["shorter_side_center_crop", "longest_side_pad", "stretch"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_grouped_batched_path_equals_per_image_path(rng, resize, interpolation):
    """Mixed sizes and channels (grouped into 4 interpolate calls), order interleaved."""
    shapes = [(30, 50, 3), (40, 24, 3), (30, 50, 3), (16, 16, 1), (40, 24, 3), (30, 50, 3),
              (9, 13, 3), (16, 16, 1)]
    imgs = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in shapes]
    pre = Preprocess(size=(16, 20), mean=MEAN, std=STD, resize=resize, crop_pct=0.875,
                     interpolation=interpolation)
    groups = pre.group(imgs)
    assert [idx for idx, _ in groups] == [[0, 2, 5], [1, 4], [3, 7], [6]]
    batched = pre(imgs, device="cpu")
    per_image = torch.stack([pre([img])[0] for img in imgs])
    assert batched.shape == (8, 3, 16, 20) and batched.dtype == torch.float32
    torch.testing.assert_close(batched, per_image, rtol=0, atol=1e-6)
    torch.testing.assert_close(pre(imgs), per_image, rtol=0, atol=0)


def test_batched_path_validates_like_the_per_image_path(rng):
    pre = Preprocess(size=(8, 8), mean=MEAN, std=STD)
    with pytest.raises(InputError, match="images"):
        pre([], device="cpu")
    with pytest.raises(InputError, match=r"images\[1\]"):
        pre([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 2), np.uint8)], device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_matches_cpu(rng):
    imgs = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(300, 500, 3), (256, 256, 3)]]
    pre = Preprocess(size=(224, 224), mean=MEAN, std=STD, crop_pct=0.875)
    torch.testing.assert_close(pre(imgs, device="cuda").cpu(), pre(imgs), rtol=0, atol=1e-4)


@pytest.mark.parametrize("hw", [(232, 300), (323, 256), (918, 1174), (175, 175), (301, 257)])
@pytest.mark.parametrize("crop_pct", [0.875, 0.9, 1.0])
def test_square_center_crop_equals_torchvision_eval_transform(rng, hw, crop_pct):
    """timm's eval transform: Resize(floor(224 / crop_pct)) (antialiased, long side truncated)
    then CenterCrop(224) (offsets rounded half to even), on the float image: the same pixels."""
    from torchvision.transforms import v2

    img = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    pre = Preprocess(size=(224, 224), mean=MEAN, std=STD, crop_pct=crop_pct,
                     interpolation="bilinear")
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    tv = v2.Compose([v2.Resize(int(224 / crop_pct), antialias=True), v2.CenterCrop(224)])
    torch.testing.assert_close(pre([img]), _norm(tv(x).clamp(0, 1)), atol=1e-6, rtol=0)


NON_SQUARE = [(224, 160), (160, 224), (96, 128)]
#: (size, crop_pct, image (H, W)) whose cover size rounds an exact or float-noisy half: the
#: arithmetic must be timm's ResizeKeepRatio's, not an equal formula computed another way.
HALF_ROUNDING = [((224, 160), 0.875, (649, 236)), ((224, 160), 0.875, (121, 44)),
                 ((224, 160), 1.0, (192, 201)), ((160, 224), 1.0, (325, 320)),
                 ((160, 224), 0.9, (22, 121)), ((96, 128), 0.9, (20, 95))]


@pytest.mark.parametrize(("size", "crop_pct", "hw"), [
    *[(size, crop, hw) for size in NON_SQUARE for crop in (0.875, 0.9, 1.0)
      for hw in ((232, 300), (301, 257), (57, 61))], *HALF_ROUNDING])
def test_non_square_center_crop_equals_timm_eval_transform(rng, size, crop_pct, hw):
    """timm's own eval transform for a non-square input size (create_transform, crop_mode
    'center': ResizeKeepRatio(floor(size / crop_pct)), CenterCrop(size), Normalize), on the
    float image: the same pixels."""
    from timm.data import create_transform

    img = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    pre = Preprocess(size=size, mean=MEAN, std=STD, crop_pct=crop_pct, interpolation="bilinear")
    timm_eval = create_transform(input_size=(3, *size), crop_pct=crop_pct, crop_mode="center",
                                 interpolation="bilinear", mean=MEAN, std=STD)
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(pre([img]), timm_eval(x)[None], atol=1e-6, rtol=0)


@pytest.mark.parametrize(("size", "crop_pct"), [((224, 224), 0.9), ((224, 160), 0.875),
                                               ((96, 128), 0.95), ((64, 64), 1.0)])
@pytest.mark.parametrize("hw", [(232, 300), (57, 61)])
def test_stretch_equals_timm_squash_eval_transform(rng, size, crop_pct, hw):
    """timm's eval transform with crop_mode 'squash' (Resize to floor(size / crop_pct) without
    keeping the aspect, CenterCrop(size), Normalize): the same pixels."""
    from timm.data import create_transform

    img = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    pre = Preprocess(size=size, mean=MEAN, std=STD, resize="stretch", crop_pct=crop_pct,
                     interpolation="bilinear")
    timm_eval = create_transform(input_size=(3, *size), crop_pct=crop_pct, crop_mode="squash",
                                 interpolation="bilinear", mean=MEAN, std=STD)
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(pre([img]), timm_eval(x)[None], atol=1e-6, rtol=0)
    assert pre.key().startswith("v3|" if crop_pct != 1.0 else "v2|")  # crops now: new pixels


@settings(max_examples=300, deadline=None)
@given(st.integers(8, 400), st.integers(8, 400), st.sampled_from(NON_SQUARE),
       st.sampled_from([0.8, 0.875, 0.9, 0.95, 1.0]))
def test_non_square_cover_size_is_timm_resize_keep_ratio(big_h, big_w, size, crop_pct):
    """The size an image is resized to before the crop, for any image shape: timm's own
    ResizeKeepRatio.get_params (on a zero-stride tensor of that shape), and never below size."""
    from timm.data.transforms import ResizeKeepRatio

    pre = Preprocess(size=size, mean=MEAN, std=STD, crop_pct=crop_pct)
    scale_size = tuple(math.floor(s / crop_pct) for s in size)
    image = torch.empty(3, 1, 1).expand(3, big_h, big_w)
    cover = pre._cover(big_h, big_w)
    assert cover == tuple(ResizeKeepRatio.get_params(image, scale_size, 0.0))
    assert cover[0] >= size[0] and cover[1] >= size[1]


def test_key_version_moves_for_non_square_center_crops_only():
    """v3 marks the non-square centre crop's new cover arithmetic; square crops and the other
    modes give the pixels they gave, so their keys (and cached features) are unchanged."""
    square = Preprocess(size=(224, 224), mean=MEAN, std=STD, crop_pct=0.875)
    assert square.key() == ("v2|shorter_side_center_crop|224x224|crop=0.875|bicubic|"
                            "mean=0.485,0.456,0.406|std=0.229,0.224,0.225")
    assert Preprocess(size=(224, 160), mean=MEAN, std=STD, crop_pct=0.875).key().startswith(
        "v3|shorter_side_center_crop|224x160|")
    for resize in ("stretch", "longest_side_pad"):
        assert Preprocess(size=(224, 160), mean=MEAN, std=STD, resize=resize).key().startswith(
            f"v2|{resize}|224x160|")
