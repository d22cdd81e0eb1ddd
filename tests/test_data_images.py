"""Folders of PNG/JPEG images: class subfolders as labels, gray/RGB, resizing and the preprocessing record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.data import BINARY, UNIT, SourceSettings, load_data, load_examples
from vaekit.errors import DataError

rng = np.random.default_rng(0)


def save_image(path, size=(6, 4), mode="L", fmt=None):
    """A random image of ``size`` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=None).save(path, format=fmt)
    return pixels


def test_class_folders_give_labels(tmp_path):
    for cls in ("cat", "dog", "emu"):
        for i in range(4):
            save_image(tmp_path / cls / f"{i}.png")
    splits = load_data(str(tmp_path), settings=SourceSettings(valid_fraction=0.25))
    assert splits.shape == (1, 4, 6) and splits.value_range == UNIT  # (C, H, W) from 6 wide x 4 high
    assert (len(splits.train), len(splits.valid)) == (9, 3)
    record = splits.info["preprocessing"]
    assert record == {"format": "images", "classes": ["cat", "dog", "emu"], "image_size": [4, 6], "channels": 1}
    assert splits.info["num_classes"] == 3 and json.loads(json.dumps(splits.info)) == splits.info
    labels = torch.cat([splits.train.y, splits.valid.y]).sort().values
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_pixels_are_kept_exactly(tmp_path):
    pixels = save_image(tmp_path / "only" / "a.png", size=(5, 3))
    save_image(tmp_path / "only" / "b.png", size=(5, 3))
    data = load_examples(str(tmp_path))
    assert data.y is None  # a single subfolder is not a labelling
    expected = torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / 255)
    assert torch.equal(data.x[0], expected)


def test_flat_folder_has_no_labels_and_recursion_finds_nested(tmp_path):
    for i in range(5):
        save_image(tmp_path / f"{i}.png")
    save_image(tmp_path / "deeper" / "x" / "y.PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    save_image(tmp_path / ".hidden" / "skip.png")
    data = load_examples(str(tmp_path))
    assert len(data) == 6 and data.y is None


def test_mixed_sizes_need_image_size(tmp_path):
    save_image(tmp_path / "a.png", size=(6, 4))
    save_image(tmp_path / "b.png", size=(8, 8))
    with pytest.raises(DataError, match="is 8x8 but a.png is 6x4; pass image_size"):
        load_data(str(tmp_path))
    splits = load_data(str(tmp_path), image_size=(5, 7), settings=SourceSettings(valid_fraction=0.5))
    assert splits.shape == (1, 5, 7) and splits.info["preprocessing"]["image_size"] == [5, 7]


def test_rgb_and_gray_auto_and_forced(tmp_path):
    save_image(tmp_path / "a.png", mode="L")
    save_image(tmp_path / "b.jpg", mode="RGB", fmt="JPEG")
    save_image(tmp_path / "c.png", mode="RGBA")
    assert load_data(str(tmp_path), settings=SourceSettings(valid_fraction=0.34)).shape == (3, 4, 6)
    gray = load_data(str(tmp_path), grayscale=True, settings=SourceSettings(valid_fraction=0.34))
    assert gray.shape == (1, 4, 6) and gray.info["preprocessing"]["channels"] == 1


def test_black_and_white_images_are_binary(tmp_path):
    for i in range(4):
        Image.fromarray((rng.random((5, 5)) > 0.5).astype(np.uint8) * 255).save(tmp_path / f"{i}.png")
    assert load_data(str(tmp_path), settings=SourceSettings(valid_fraction=0.25)).value_range == BINARY


def test_sixteen_bit_gray(tmp_path):
    values = np.array([[0, 65535], [32768, 256]], dtype=np.uint16)
    for i in range(2):
        Image.fromarray(values).save(tmp_path / f"{i}.png")
    data = load_examples(str(tmp_path))
    assert data.shape == (1, 2, 2)
    assert torch.allclose(data.x[0, 0], torch.tensor([[0, 255], [128, 1]]) / 255)


def test_saved_preprocessing_resizes_new_images_and_maps_classes(tmp_path):
    for cls in ("a", "b"):
        for i in range(3):
            save_image(tmp_path / "train" / cls / f"{i}.png", size=(8, 8))
    splits = load_data(str(tmp_path / "train"), settings=SourceSettings(valid_fraction=0.34))
    saved = json.loads(json.dumps(splits.info["preprocessing"]))
    save_image(tmp_path / "new" / "b" / "x.png", size=(16, 12), mode="RGB")
    new = load_examples(str(tmp_path / "new"), preprocessing=saved, expected_shape=splits.info["shape"])
    assert new.shape == (1, 8, 8) and new.y.tolist() == [1]
    save_image(tmp_path / "other" / "zebra" / "x.png", size=(8, 8))
    with pytest.raises(DataError, match="not in a known class folder"):
        load_examples(str(tmp_path / "other"), preprocessing=saved)


def test_empty_folder(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="no PNG or JPEG images found"):
        load_data(str(tmp_path))


def test_corrupt_image_names_the_file(tmp_path):
    save_image(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(DataError, match=r"cannot read image .*bad\.png"):
        load_data(str(tmp_path))


def test_truncated_image(tmp_path):
    save_image(tmp_path / "a.png", size=(64, 64))
    raw = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(raw[: len(raw) // 2])
    save_image(tmp_path / "b.png", size=(64, 64))
    with pytest.raises(DataError, match=r"cannot read image .*a\.png"):
        load_data(str(tmp_path))


def test_other_formats_are_not_guessed(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png", format="BMP")  # a BMP named .png
    with pytest.raises(DataError, match="cannot read image"):
        load_examples(str(tmp_path))
