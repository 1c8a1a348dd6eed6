"""A dataset's ``tile`` param: images cut into tiles at conversion, split by source image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from detplug.core.data import records
from detplug.core.plan.params import ParamsError, build_params
from detplug.plugins.datasets import TileParams, YoloTxtParams
from detplug.plugins.datasets.yolo_txt import prepare_yolo_txt

#: Four 200x300 images; tiles of 128 overlapping by 0.2 step by round(102.4) = 102:
#: rows start at 0 and 72 (= 200 - 128), columns at 0, 102 and 172 (= 300 - 128): 6 tiles each.
NAMES = ("a.png", "b.png", "c.png", "d.png")
HEIGHT, WIDTH, TILE = 200, 300, 128

# a.png's two boxes, x1 y1 x2 y2 in its pixels, as YOLO's normalised centre and size:
#   person x 100..140, y 20..60: 28 of its 40 px wide in the tile at x 0..128 (0.7, kept), 38 in the
#     one at x 102..230 (kept), none in the one at x 172..300 (dropped); rows at y 72.. hold none.
#   car x 120..160, y 20..60: 8 of 40 in the tile at x 0..128 (0.2 < 0.5: an ignore region there),
#     wholly in the one at x 102..230 (kept), none at x 172.. (dropped).
PERSON, CAR = (100, 20, 140, 60), (120, 20, 160, 60)


def yolo_line(label: int, box: tuple[int, int, int, int]) -> str:
    x1, y1, x2, y2 = box
    return (f"{label} {(x1 + x2) / 2 / WIDTH:.8f} {(y1 + y2) / 2 / HEIGHT:.8f} {(x2 - x1) / WIDTH:.8f} "
            f"{(y2 - y1) / HEIGHT:.8f}\n")


def write_folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index, name in enumerate(NAMES):
        Image.new("RGB", (WIDTH, HEIGHT), (40 * index, 90, 160)).save(root / "images" / name)
        (root / "labels" / Path(name).with_suffix(".txt")).write_text(yolo_line(0, PERSON) + yolo_line(1, CAR))
    (root / "data.yaml").write_text("names: [person, car]\n")
    return root


def read_records(files: list[Path]) -> dict[str, dict]:
    found = {}
    for path in files:
        for serialized in tf.data.TFRecordDataset(str(path)):
            record = {key: value.numpy() for key, value in records.parse_all(serialized).items()}
            found[record["filename"].decode()] = record
    return found


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiled")
    params = YoloTxtParams(image_size=(TILE, TILE), val_ratio=0.25, tile={"size": TILE, "overlap": 0.2})
    return prepare_yolo_txt(params, data_root=write_folder(folder / "yolo"), cache_dir=folder / "cache")


def test_boxes_cut_by_a_tile_are_kept_ignored_or_dropped_as_computed_by_hand(tiled):
    found = read_records(tiled.train_files + tiled.val_files)
    assert len(found) == 4 * 6
    key = "images/a.png"
    windows = {name.split("@")[1]: record for name, record in found.items() if name.startswith(key + "@")}
    assert sorted(windows) == ["0_0", "0_102", "0_172", "72_0", "72_102", "72_172"]
    first, second = windows["0_0"], windows["0_102"]
    assert first["source_key"].decode() == key and first["window"].tolist() == [0, 0, TILE, TILE]
    assert second["window"].tolist() == [0, 102, TILE, TILE] and second["original_size"].tolist() == [TILE, TILE]
    # In the tile's pixels: the person clipped at the tile's right edge, the car an ignore region.
    np.testing.assert_allclose(first["source_boxes"], [[100, 20, 128, 60], [120, 20, 128, 60]], atol=1e-3)
    assert first["classes"].tolist() == [0, -1]
    np.testing.assert_allclose(second["source_boxes"], [[0, 20, 38, 60], [18, 20, 58, 60]], atol=1e-3)
    assert second["classes"].tolist() == [0, 1]
    # A 128x128 tile letterboxed to 128x128 is not scaled: the record's boxes are its pixels / 128.
    np.testing.assert_allclose(second["boxes"], [[20 / 128, 0, 60 / 128, 38 / 128],
                                                 [20 / 128, 18 / 128, 60 / 128, 58 / 128]], atol=1e-5)
    for empty in ("0_172", "72_0", "72_102", "72_172"):
        assert windows[empty]["classes"].tolist() == []


def test_no_source_image_is_on_both_sides_of_the_split(tiled):
    train = {record["source_key"].decode() for record in read_records(tiled.train_files).values()}
    val = {record["source_key"].decode() for record in read_records(tiled.val_files).values()}
    assert len(train) == 3 and len(val) == 1 and not train & val
    listed = {split: [entry["key"] for entry in tiled.source_images(split)] for split in ("train", "val")}
    assert set(listed["train"]) == train and set(listed["val"]) == val
    assert tiled.images("train") == 18 and tiled.manifest["splits"]["train"]["source_images"] == 3


def test_the_manifest_lists_each_source_image_with_its_size_tiles_and_full_size_val_labels(tiled):
    assert tiled.tile == {"size": TILE, "overlap": 0.2, "min_area_ratio": 0.5}
    (val,) = tiled.source_images("val")
    assert Path(val["image"]).is_file() and val["size"] == [HEIGHT, WIDTH]
    assert val["tiles"] == [[top, left, TILE, TILE] for top in (0, 72) for left in (0, 102, 172)]
    np.testing.assert_allclose(val["boxes"], [PERSON, CAR], atol=1e-2)
    assert val["classes"] == [0, 1]
    assert "boxes" not in tiled.source_images("train")[0]  # train images: their tiles are enough


def test_the_conversion_line_counts_images_and_tiles(tmp_path, capsys):
    params = YoloTxtParams(image_size=(TILE, TILE), tile={"size": 250})  # 200x300: one row, columns 0 and 50
    prepare_yolo_txt(params, data_root=write_folder(tmp_path / "yolo"), cache_dir=tmp_path / "cache")
    assert "4 images -> 8 tiles of 250x250" in capsys.readouterr().out


def test_an_image_no_larger_than_a_tile_stays_whole(tmp_path):
    params = YoloTxtParams(image_size=(TILE, TILE), tile={"size": 320})
    prepared = prepare_yolo_txt(params, data_root=write_folder(tmp_path / "yolo"), cache_dir=tmp_path / "cache")
    found = read_records(prepared.train_files + prepared.val_files)
    assert sorted(found) == [f"images/{name}" for name in NAMES]
    assert found["images/a.png"]["window"].tolist() == [0, 0, HEIGHT, WIDTH]
    np.testing.assert_allclose(found["images/a.png"]["source_boxes"], [PERSON, CAR], atol=1e-3)


@pytest.mark.parametrize("table, key, words", [
    ({"overlap": 0.2}, "tile.size", "missing"),
    ({"size": 0}, "tile.size", r"> 0 \(got 0\)"),
    ({"size": 320, "overlap": 1.0}, "tile.overlap", ">= 0 and < 1"),
    ({"size": 320, "min_area_ratio": 0}, "tile.min_area_ratio", "> 0 and <= 1"),
    ({"size": 320, "min_area": 0.5}, "tile.min_area", "did you mean 'min_area_ratio'"),
])
def test_a_bad_tile_table_is_one_sentence_naming_its_key(table, key, words):
    with pytest.raises(ParamsError, match=words) as raised:
        build_params(YoloTxtParams, {"tile": table})
    assert raised.value.key == key


def test_an_empty_or_absent_tile_table_means_whole_images():
    assert build_params(YoloTxtParams, {"tile": {}}).tile is None
    assert YoloTxtParams().tile is None
    assert build_params(YoloTxtParams, {"tile": {"size": 64}}).tile == TileParams(size=64)


def test_whole_image_evaluation_reads_the_val_source_images_a_tiled_conversion_lists(tiled):
    from detplug.core.data.slicing import Slicing, prepared_slicing, source_images

    assert prepared_slicing(tiled) == Slicing(TILE, 0.2)
    (val,) = source_images(tiled, "val")
    assert val.path.is_file() and val.size == (HEIGHT, WIDTH)
    np.testing.assert_allclose(val.boxes, [PERSON, CAR], atol=1e-2)
    assert val.classes.tolist() == [0, 1]
