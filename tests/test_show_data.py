"""--show-data: the training images as the trainer sees them, each box drawn where its
targets put it, and labels.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import run_cli
from PIL import Image

from detplug.core.evaluate.drawing import PALETTE
from detplug.core.pictures.data_view import Positive, draw_training_image, places, positives_per_box, scale_for

# One 64x96 image, one box of class 1 from x 24 to 72 and y 16 to 48 (pixels at the input
# size): centre (32, 48), size 32x48, i.e. yxhw (0.5, 0.5, 0.5, 0.5) as ratios.
BOX = np.array([[0.5, 0.5, 0.5, 0.5]], np.float32)
ANCHORS = {8: [(0.25, 0.25)], 16: [(0.5, 0.5), (0.4, 0.6)]}


def one_positive_targets() -> dict[str, np.ndarray]:
    """The box trains anchor 1 of stride 16 in its centre's cell: row 32 // 16 = 2, column 48 // 16 = 3."""
    targets = {"8": np.zeros((8, 12, 1, 7), np.float32), "16": np.zeros((4, 6, 2, 7), np.float32)}
    targets["16"][2, 3, 1] = [0.5, 0.5, 0.5, 0.5, 1, 0, 1]
    return targets


def test_positives_are_found_by_the_box_their_target_holds():
    boxes = np.array([[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.5, 0.5]], np.float32)
    assert positives_per_box(one_positive_targets(), boxes) == [[], [Positive(16, 1, 2, 3)]]
    assert places([Positive(16, 1, 2, 3), Positive(8, 0, 4, 6), Positive(16, 0, 2, 3)]) == "8:0 16:01"


def test_the_box_outline_covers_exactly_the_box_pixels_enlarged():
    scale = scale_for(64, 96)
    assert scale == 6  # 640 // 96: labels stay readable
    drawn = np.asarray(draw_training_image(np.zeros((64, 96, 3), np.float32), BOX, np.array([1]),
                                           one_positive_targets(), ANCHORS, ["person", "car"]))
    assert drawn.shape == (64 * scale, 96 * scale, 3)
    colour = list(PALETTE[1])
    left, top, right, bottom = 24 * scale, 16 * scale, 72 * scale - 1, 48 * scale - 1
    for y in (top + 60, bottom - 10):  # both vertical sides, 2 pixels wide, away from the label
        assert drawn[y, left].tolist() == drawn[y, left + 1].tolist() == colour
        assert drawn[y, right].tolist() == drawn[y, right - 1].tolist() == colour
        assert drawn[y, left - 1].tolist() == drawn[y, right + 1].tolist() == [0, 0, 0]
    for x in (right - 20, left + 200):
        assert drawn[bottom, x].tolist() == drawn[bottom - 1, x].tolist() == colour
        assert drawn[bottom + 1, x].tolist() == [0, 0, 0]
    # The positive's cell (row 2, column 3 at stride 16) has a dot on its centre, in the class colour.
    assert drawn[int(2.5 * 16 * scale), int(3.5 * 16 * scale)].tolist() == colour


def test_an_ignore_region_is_shaded_grey_and_gets_no_outline():
    drawn = np.asarray(draw_training_image(np.zeros((64, 96, 3), np.float32), BOX, np.array([-1]),
                                           {"16": np.zeros((4, 6, 2, 7), np.float32)}, ANCHORS, ["person", "car"]))
    inside = drawn[40 * 6, 60 * 6]
    assert inside[0] == inside[1] == inside[2] and 30 < inside[0] < 80  # grey over black, half transparent
    assert drawn[40 * 6, 24 * 6].tolist() == inside.tolist()  # the edge is shaded like the inside


def write_one_box_folder(root: Path) -> Path:
    """A YOLO folder of 4 black 64x96 training images (2 for validation), each with the box above."""
    for split, count in (("train", 4), ("val", 2)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (96, 64)).save(root / "images" / split / f"{index}.png")
            (root / "labels" / split / f"{index}.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("names: [person, car]\n")
    return root


PLAN = """
name = "one_box"

[model]
backbone = {{ name = "darknet53", width = 0.125, depth = 0.1 }}
head = {{ name = "yolov3_fpn", width = 0.125 }}
decoder = {{ name = "yolo" }}
anchors = "coco_yolov3"

[datasets.boxes]
name = "yolo_txt"
root = "{root}"
image_size = [64, 96]

[loss_combos.standard]
ciou = 1.0
objectness = 1.0
category = 1.0

[train]
batch_size = 2
seed = 0

[[periods]]
dataset = "boxes"
epochs = 1
learning_rate = 1e-3
losses = "standard"
save = false
"""


def test_show_data_draws_the_box_where_the_targets_put_it_and_labels_png(tmp_path):
    root = write_one_box_folder(tmp_path / "yolo")
    plan = tmp_path / "one_box.toml"
    plan.write_text(PLAN.format(root=root))
    out = tmp_path / "pictures"
    result = run_cli("--plan", str(plan), "--show-data", "--images", "3", "--out", str(out),
                     "--cache-dir", str(tmp_path / "cache"), "--workdir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "drew 3 training images of period 1 (boxes, epoch 1, as the trainer sees them)" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["labels.png", "train_batch0.png", "train_batch1.png"]
    assert not (tmp_path / "run").exists()  # no training, nothing in the run folder

    scale = scale_for(64, 96)
    with Image.open(out / "train_batch0.png") as image:
        assert image.size == (2 * 96 * scale, 64 * scale)  # the batch of 2, side by side
        drawn = np.asarray(image.convert("RGB"))
    left, bottom = 24 * scale, 48 * scale - 1
    for tile in range(2):
        x = tile * 96 * scale
        assert drawn[40 * scale, x + left].tolist() == list(PALETTE[1])
        assert drawn[bottom, x + left + 100].tolist() == list(PALETTE[1])
    with Image.open(out / "train_batch1.png") as image:
        assert image.size == (96 * scale, 64 * scale)  # the third image alone
    with Image.open(out / "labels.png") as image:
        assert image.format == "PNG" and image.size == (1500, 450)
