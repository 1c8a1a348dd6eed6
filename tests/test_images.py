"""Images are read as images: every pixel mode reaches the records as the right 8-bit RGB.

Real files of each mode go through a real conversion (a YOLO folder at its own size, so
the letterbox is the identity), and the pixels are read back from the records.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from detplug.core.data import records
from detplug.core.data.images import as_rgb
from detplug.core.data.letterbox import PAD_VALUE
from detplug.core.errors import DataError
from detplug.plugins.datasets import YoloTxtParams
from detplug.plugins.datasets.yolo_txt import prepare_yolo_txt

SIZE = (8, 16)  # height, width: the records' size, so nothing is resized


def png_rgb16(path: Path, pixels: np.ndarray) -> None:
    """A 48-bit RGB PNG (16 bits per sample), written by hand: Pillow cannot write one."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def gradient16() -> np.ndarray:
    return (np.arange(SIZE[0] * SIZE[1], dtype=np.uint32).reshape(SIZE) * 65535 // (SIZE[0] * SIZE[1] - 1)).astype(
        np.uint16)


def write_cases(folder: Path) -> dict[str, np.ndarray]:
    """Image files of several modes, and the 8-bit RGB each must become."""
    folder.mkdir(parents=True)
    expected = {}
    grey16 = gradient16()
    Image.fromarray(grey16).save(folder / "grey16.png")
    expected["grey16"] = np.repeat(np.rint(grey16 / 257.0).astype(np.uint8)[..., None], 3, axis=-1)

    rgb16 = np.stack([grey16, 65535 - grey16, np.full(SIZE, 0x12FF, np.uint16)], axis=-1)
    png_rgb16(folder / "rgb16.PNG", rgb16)  # an upper-case suffix too
    expected["rgb16"] = (rgb16 >> 8).astype(np.uint8)  # Pillow keeps each sample's high byte

    palette = Image.new("P", (SIZE[1], SIZE[0]), 0)
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.paste(1, (0, 0, 8, 8))
    palette.save(folder / "palette.png")
    expected["palette"] = np.zeros((*SIZE, 3), np.uint8) + np.array([10, 20, 30], np.uint8)
    expected["palette"][:8, :8] = (200, 100, 50)

    rgba = np.zeros((*SIZE, 4), np.uint8)
    rgba[..., :3] = (250, 0, 0)
    rgba[:, :8, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba).save(folder / "rgba.png")
    expected["rgba"] = np.zeros((*SIZE, 3), np.uint8) + PAD_VALUE
    expected["rgba"][:, :8] = (250, 0, 0)

    grey = (np.arange(SIZE[1], dtype=np.uint8) * 16)[None].repeat(SIZE[0], 0)
    Image.fromarray(grey).save(folder / "grey.JPG", quality=100)
    expected["grey"] = np.asarray(Image.open(folder / "grey.JPG").convert("RGB"))
    for name in expected:
        (folder / f"{name}.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (folder / "classes.txt").write_text("thing\n")
    return expected


def test_every_mode_reaches_the_records_as_the_right_8_bit_rgb(tmp_path):
    expected = write_cases(tmp_path / "images")
    params = YoloTxtParams(image_size=SIZE)
    prepared = prepare_yolo_txt(params, data_root=tmp_path / "images", cache_dir=tmp_path / "cache")
    found = {}
    for path in prepared.train_files + prepared.val_files:
        for serialized in tf.data.TFRecordDataset(str(path)):
            record = records.parse_all(serialized)
            found[Path(record["filename"].numpy().decode()).stem] = tf.io.decode_png(record["png"]).numpy()
    assert sorted(found) == sorted(expected)  # .PNG and .JPG found too
    for name, pixels in expected.items():
        np.testing.assert_array_equal(found[name], pixels, err_msg=name)
    assert found["grey16"].max() == 255 and found["grey16"].min() == 0  # not clipped to white


def test_a_mode_without_a_faithful_rgb_form_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "depth.tif"
    Image.fromarray(np.linspace(0, 1, 128, dtype=np.float32).reshape(SIZE)).save(path)
    with Image.open(path) as image, pytest.raises(DataError, match=rf"{path}: image mode F .* save it as"):
        as_rgb(image, path)
