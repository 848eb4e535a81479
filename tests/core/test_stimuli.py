from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cortexalign.errors import InputError
from cortexalign.stimuli import StimulusSet, load_bundled, load_folder, load_npz, load_stimuli


def _write_pngs(folder, n, rng, size=(12, 10)):
    imgs = []
    for k in range(n):
        arr = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"im{k}.png")
        imgs.append(arr)
    return imgs


def test_folder_loader_is_lazy_ordered_and_exact(tmp_path, rng):
    imgs = _write_pngs(tmp_path, 3, rng)
    (tmp_path / "notes.txt").write_text("not an image")
    stim = load_folder(tmp_path)
    assert stim.ids == ("im0.png", "im1.png", "im2.png")
    for k in range(3):
        np.testing.assert_array_equal(stim.image(k), imgs[k])
    np.testing.assert_array_equal(stim.image("im1.png"), imgs[1])


def test_content_hash_tracks_pixels_and_ids(tmp_path, rng):
    imgs = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    a = StimulusSet.from_arrays(imgs, ids=list("abcd"))
    b = StimulusSet.from_arrays(imgs.copy(), ids=list("abcd"))
    changed = imgs.copy()
    changed[2, 0, 0, 0] ^= 1
    c = StimulusSet.from_arrays(changed, ids=list("abcd"))
    d = StimulusSet.from_arrays(imgs, ids=list("abce"))
    assert a.content_hash == b.content_hash
    assert len({a.content_hash, c.content_hash, d.content_hash}) == 3


def test_folder_hash_changes_when_a_file_changes(tmp_path, rng):
    _write_pngs(tmp_path, 2, rng)
    h1 = load_folder(tmp_path).content_hash
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "im1.png")
    assert load_folder(tmp_path).content_hash != h1


def test_npz_loader_round_trip(tmp_path, rng):
    imgs = rng.integers(0, 256, size=(3, 5, 6), dtype=np.uint8)  # grayscale
    np.savez(tmp_path / "s.npz", images=imgs, stimulus_ids=np.array(["x", "y", "z"]))
    stim = load_npz(tmp_path / "s.npz")
    assert stim.ids == ("x", "y", "z")
    assert stim.image(1).shape == (5, 6, 1)
    np.testing.assert_array_equal(stim.image(1)[:, :, 0], imgs[1])
    assert load_stimuli(tmp_path / "s.npz").content_hash == stim.content_hash


def test_bundled_92_objects_match_shared_copy(shared_data):
    stim = load_bundled("kriegeskorte92")
    ref = np.load(shared_data / "kriegeskorte92" / "kriegeskorte92.npz")
    assert len(stim) == 92 and stim.ids[0] == "img00"
    np.testing.assert_array_equal(stim.image(91), ref["images"][91])
    assert list(stim.metadata["category"]) == list(ref["category"])


def test_subset_keeps_order_and_pixels(rng):
    imgs = rng.integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8)
    stim = StimulusSet.from_arrays(imgs, ids=list("abcde"))
    sub = stim.subset(["d", "a"])
    assert sub.ids == ("d", "a")
    np.testing.assert_array_equal(sub.image(0), imgs[3])


@pytest.mark.parametrize("ids", [["a", "a"], ["a", ""]])
def test_bad_ids_are_refused(ids):
    with pytest.raises(InputError, match="ids"):
        StimulusSet.from_arrays(np.zeros((2, 4, 4, 3), np.uint8), ids=ids)


def test_corrupt_image_file_is_named(tmp_path, rng):
    _write_pngs(tmp_path, 1, rng)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputError, match="broken.png"):
        load_folder(tmp_path)


def test_empty_folder_and_wrong_channel_count(tmp_path):
    with pytest.raises(InputError, match="no image files"):
        load_folder(tmp_path)
    with pytest.raises(InputError, match="shape"):
        StimulusSet.from_arrays([np.zeros((4, 4, 2), np.uint8)])


def test_float_images_out_of_range_are_refused():
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        StimulusSet.from_arrays([np.full((4, 4, 3), 2.0)])


def test_unknown_source_lists_bundled_sets():
    with pytest.raises(InputError, match="kriegeskorte92"):
        load_stimuli("kriegeskorte93")


def test_pixel_digest_equals_a_serial_sha256_of_per_image_digests(rng):
    import hashlib

    from cortexalign.stimuli._stimulus_set import pixel_digest

    imgs = [rng.integers(0, 256, size=(5 + k % 3, 7, 3), dtype=np.uint8) for k in range(40)]
    ref = hashlib.sha256(b"cortexalign-pixels-v2\0")
    for im in imgs:  # written out independently: shape (int64) then the raw pixel bytes
        ref.update(hashlib.sha256(np.asarray(im.shape, np.int64).tobytes() + im.tobytes()).digest())
    assert pixel_digest(len(imgs), imgs.__getitem__) == ref.hexdigest()
    assert pixel_digest(len(imgs), imgs[::-1].__getitem__) != ref.hexdigest()  # order matters
    views = [np.asfortranarray(im) for im in imgs]  # non-contiguous memory, same pixels
    assert pixel_digest(len(views), views.__getitem__) == ref.hexdigest()
    # a lazily loaded set (no fingerprint) and the in-memory one share the pixel part
    lazy = StimulusSet(name="lazy", ids=tuple(f"stim{k:05d}" for k in range(40)),
                       loader=imgs.__getitem__)
    assert lazy.content_hash == StimulusSet.from_arrays(imgs, name="other").content_hash
