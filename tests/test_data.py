"""From a KITTI folder to batches: letterbox, label parsing, synthetic sample, records, pipeline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from detplug.core.data import records
from detplug.core.data.kitti_format import parse_kitti_file as parse_label_file
from detplug.core.data.letterbox import PAD_VALUE, letterbox_image, letterbox_params
from detplug.core.data.pipeline import count_steps, make_dataset
from detplug.core.data.prepared import MANIFEST_NAME, read_prepared
from detplug.core.errors import DataError
from detplug.core.plan.anchors import anchor_pixels, anchors_to_ratios
from detplug.core.plan.augmentation import Augmentation
from detplug.core.plan.specs import ImageSpec, LabelSpec
from detplug.plugins.datasets import KittiParams, SyntheticParams
from detplug.plugins.datasets.kitti import convert_kitti, prepare_kitti, prepare_synthetic
from detplug.plugins.datasets.synthetic import generate_kitti_sample

IMAGE = ImageSpec(64, 192)
ANCHORS = anchors_to_ratios(anchor_pixels("coco_yolov3"), IMAGE)
CLASSES = ("Car", "Pedestrian", "Cyclist")
SMALL = {"image_size": (64, 192), "max_boxes": 8}

CAR = "Car 0.00 0 -1.58 100.00 20.00 200.00 70.00 1.50 1.60 3.90 1.00 1.60 20.00 -1.57"
VAN = "Van 0.00 1 -1.58 10.00 10.00 40.00 30.00 2.00 1.80 4.50 -5.00 1.60 30.00 -1.50"
PEDESTRIAN = "Pedestrian 0.30 2 0.10 300.00 10.00 320.00 60.00 1.70 0.60 0.80 4.00 1.60 15.00 0.20"
DONT_CARE = "DontCare -1 -1 -10 0.00 80.00 50.00 99.00 -1 -1 -1 -1000 -1000 -1000 -10"


def write_kitti(root: Path, labels: dict[str, list[str]], size: tuple[int, int] = (100, 400)) -> Path:
    """A hand-made KITTI folder: one flat image per label file."""
    (root / "training" / "image_2").mkdir(parents=True)
    (root / "training" / "label_2").mkdir(parents=True)
    for stem, lines in labels.items():
        Image.new("RGB", (size[1], size[0]), (30, 60, 90)).save(root / "training" / "image_2" / f"{stem}.png")
        (root / "training" / "label_2" / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    return root


def read_records(files: list[Path]) -> list[dict]:
    return [
        {key: value.numpy() for key, value in records.parse_all(serialized).items()}
        for serialized in tf.data.TFRecordDataset([str(f) for f in files])
    ]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """12 synthetic images converted at 64x192: 10 train, 2 val."""
    cache = tmp_path_factory.mktemp("cache")
    params = SyntheticParams(images=12, source_size=(94, 310), seed=3, val_ratio=0.2, **SMALL)
    return prepare_synthetic(params, data_root=None, cache_dir=cache)


# -- letterbox -------------------------------------------------------------------------


def test_letterbox_wide_image_maps_pixel_boxes_to_normalised_yxyx():
    # 100x400 into 192x640: scale min(1.92, 1.6) = 1.6 -> 160x640, 16 px gray above and below.
    mapping = letterbox_params((100, 400), (192, 640))
    assert (mapping.resized, mapping.offset) == ((160, 640), (16, 0))
    # x 100..200 -> 160..320 of 640; y 20..70 -> 48..128 of 192
    np.testing.assert_allclose(mapping.boxes([[100, 20, 200, 70]]), [[0.25, 0.25, 128 / 192, 0.5]], rtol=1e-6)


def test_letterbox_tall_image_pads_left_and_right_and_clips_boxes():
    # 400x100 into 192x640: scale 0.48 -> 192x48, 296 px gray left and right.
    mapping = letterbox_params((400, 100), (192, 640))
    assert (mapping.resized, mapping.offset) == ((192, 48), (0, 296))
    # A box running past the right edge is clipped to the image content (x = 100 -> 296 + 48).
    np.testing.assert_allclose(mapping.boxes([[50, 100, 150, 200]]), [[0.25, 320 / 640, 0.5, 344 / 640]], rtol=1e-6)


def test_letterbox_image_is_centred_on_gray():
    image, _ = letterbox_image(Image.new("RGB", (400, 100), (255, 0, 0)), (192, 640))
    pixels = np.asarray(image)
    assert pixels.shape == (192, 640, 3)
    assert (pixels[:16] == PAD_VALUE).all() and (pixels[-16:] == PAD_VALUE).all()
    assert (pixels[16:176] == (255, 0, 0)).all()


# -- KITTI labels ----------------------------------------------------------------------


def test_kitti_label_file_parses_every_line(tmp_path):
    path = tmp_path / "000001.txt"
    path.write_text(f"{CAR}\n\n{VAN}\n{DONT_CARE}\n")
    objects = parse_label_file(path)
    assert [o.type for o in objects] == ["Car", "Van", "DontCare"]
    assert objects[0].box == (100.0, 20.0, 200.0, 70.0)
    assert (objects[1].truncated, objects[1].occluded) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("Car 0.00 0 -1.58 100.00 20.00 200.00 70.00", "expected 15 columns"),
        (CAR.replace("20.00", "twenty", 1), "column 'y1' must be a number (got 'twenty')"),
    ],
)
def test_bad_kitti_label_line_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "000007.txt"
    path.write_text(f"{CAR}\n{bad_line}\n")
    with pytest.raises(DataError, match=re.escape(message)) as error:
        parse_label_file(path)
    assert f"{path}:2:" in str(error.value)


# (Boxes are checked against the image while converting: see test_data_errors.py.)


def test_conversion_keeps_plan_classes_drops_others_and_marks_dont_care(tmp_path, capsys):
    root = write_kitti(tmp_path / "kitti", {"000000": [CAR, VAN, PEDESTRIAN, DONT_CARE], "000001": [CAR]})
    params = KittiParams(val_ratio=0.5, **SMALL)
    prepared = convert_kitti(root, params, cache_dir=tmp_path / "cache")
    assert prepared.manifest["splits"]["train"]["images"] + prepared.manifest["splits"]["val"]["images"] == 2
    by_name = {r["filename"].decode(): r for r in read_records(prepared.train_files + prepared.val_files)}
    first = by_name["000000.png"]
    assert first["classes"].tolist() == [0, 1, -1]  # Car, Pedestrian, DontCare; the Van is gone
    # 100x400 into 64x192: scale 0.48 -> 48x192, 8 px gray above. Car x 100..200, y 20..70.
    np.testing.assert_allclose(first["boxes"][0], [(8 + 9.6) / 64, 48 / 192, (8 + 33.6) / 64, 96 / 192], rtol=1e-5)
    totals = {
        name: sum(prepared.manifest["splits"][s]["boxes_per_class"][name] for s in ("train", "val")) for name in CLASSES
    }
    assert totals == {"Car": 2, "Pedestrian": 1, "Cyclist": 0}
    assert "warning: no boxes of class Cyclist" in capsys.readouterr().out


def test_boxes_beyond_max_boxes_are_left_out_and_counted(tmp_path, capsys):
    root = write_kitti(tmp_path / "kitti", {"000000": [CAR] * 5, "000001": [CAR]})
    prepared = convert_kitti(root, KittiParams(image_size=(64, 192), max_boxes=3), cache_dir=tmp_path / "cache")
    counts = sorted(len(r["classes"]) for r in read_records(prepared.train_files + prepared.val_files))
    assert counts == [1, 3]
    assert "2 boxes beyond max_boxes=3 were left out" in capsys.readouterr().out


def test_an_unreadable_image_or_a_missing_label_file_is_named(tmp_path):
    root = write_kitti(tmp_path / "kitti", {"000000": [CAR], "000001": [CAR]})
    broken = root / "training" / "image_2" / "000001.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match=re.escape(f"{broken} cannot be read as an image")):
        convert_kitti(root, KittiParams(**SMALL), cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "records").iterdir()), "a failed conversion leaves nothing behind"
    Image.new("RGB", (400, 100)).save(broken)
    label = root / "training" / "label_2" / "000000.txt"
    label.unlink()
    with pytest.raises(DataError, match=re.escape(f"{label} is missing")):
        convert_kitti(root, KittiParams(**SMALL), cache_dir=tmp_path / "cache")


# -- the synthetic sample --------------------------------------------------------------


def test_synthetic_sample_is_deterministic_and_kitti_shaped(tmp_path):
    first = generate_kitti_sample(tmp_path / "a", images=6, source_size=(94, 310), seed=5, classes=CLASSES)
    second = generate_kitti_sample(tmp_path / "b", images=6, source_size=(94, 310), seed=5, classes=CLASSES)
    other = generate_kitti_sample(tmp_path / "c", images=6, source_size=(94, 310), seed=6, classes=CLASSES)
    names = sorted(p.relative_to(first).as_posix() for p in (first / "training").rglob("*") if p.is_file())
    assert names == [f"training/image_2/{i:06d}.png" for i in range(6)] + [
        f"training/label_2/{i:06d}.txt" for i in range(6)
    ]
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in names)
    assert any((first / name).read_bytes() != (other / name).read_bytes() for name in names)
    with Image.open(first / "training" / "image_2" / "000000.png") as image:
        assert (image.height, image.width, image.mode) == (94, 310, "RGB")
    for index in range(6):
        objects = parse_label_file(first / "training" / "label_2" / f"{index:06d}.txt")
        kinds = [o.type for o in objects if o.type != "DontCare"]
        assert 1 <= len(kinds) <= 6 and set(kinds) <= set(CLASSES)
        assert all(0 <= o.box[0] < o.box[2] <= 310 and 0 <= o.box[1] < o.box[3] <= 94 for o in objects)


def test_synthetic_dont_care_lines_use_kittis_format(tmp_path):
    folder = generate_kitti_sample(tmp_path / "s", images=12, source_size=(94, 310), seed=0, classes=CLASSES)
    lines = [line for f in (folder / "training" / "label_2").glob("*.txt") for line in f.read_text().splitlines()]
    dont_care = [line.split() for line in lines if line.startswith("DontCare")]
    assert dont_care, "some images carry DontCare regions"
    assert all(
        t[1:4] == ["-1", "-1", "-10"] and t[8:] == ["-1", "-1", "-1", "-1000", "-1000", "-1000", "-10"]
        for t in dont_care
    )


def test_complete_synthetic_sample_is_not_redrawn(tmp_path):
    folder = generate_kitti_sample(tmp_path / "s", images=2, source_size=(64, 64), seed=0, classes=CLASSES)
    image = folder / "training" / "image_2" / "000000.png"
    os.utime(image, ns=(1, 1))
    generate_kitti_sample(folder, images=2, source_size=(64, 64), seed=0, classes=CLASSES)
    assert image.stat().st_mtime_ns == 1


def test_processes_drawing_the_same_sample_at_once_each_read_a_complete_one(tmp_path):
    # The workers of a multi-worker run share the cache and draw the sample together.
    code = (
        "import sys; from pathlib import Path\n"
        "from detplug.plugins.datasets.synthetic import generate_kitti_sample\n"
        f"folder = generate_kitti_sample(Path(sys.argv[1]), images=60, source_size=(64, 64), classes={CLASSES!r})\n"
        "labels = sorted((folder / 'training' / 'label_2').iterdir())\n"
        "print(len(labels), all(p.read_text() for p in labels))\n"
    )
    folder = tmp_path / "shared" / "sample"
    processes = [subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
                 for _ in range(3)]
    outputs = [process.communicate(timeout=120)[0].strip() for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0]
    assert outputs == ["60 True"] * 3
    assert sorted(p.name for p in folder.parent.iterdir()) == ["sample"]  # no partial copies left


# -- records, manifest and reuse -------------------------------------------------------


def test_conversion_writes_manifest_and_shards_it_lists(prepared):
    manifest = prepared.manifest
    assert manifest["format_version"] == 3 and manifest["size_policy"] == "letterbox"
    assert manifest["image_size"] == [64, 192] and manifest["classes"] == list(CLASSES)
    assert (prepared.images("train"), prepared.images("val")) == (10, 2)
    shard = manifest["splits"]["train"]["shards"][0]
    assert shard["file"] == "train-00000-of-00001.tfrecord" and shard["records"] == 10
    assert shard["sha256"] == records.file_sha256(prepared.train_files[0])
    assert all(path.is_absolute() and path.is_file() for path in prepared.train_files + prepared.val_files)
    assert not [p for p in prepared.directory.parent.iterdir() if p.name.startswith(".")], "no temp folder left"


def test_unchanged_source_is_converted_once_and_reused(tmp_path, capsys):
    root = write_kitti(tmp_path / "kitti", {"000000": [CAR], "000001": [PEDESTRIAN]})
    params = KittiParams(**SMALL)
    first = convert_kitti(root, params, cache_dir=tmp_path / "cache")
    assert "converting 2 images" in capsys.readouterr().out
    again = convert_kitti(root, params, cache_dir=tmp_path / "cache")
    out = capsys.readouterr().out
    assert again.directory == first.directory and out.count("\n") == 1 and "reusing" in out
    (root / "training" / "label_2" / "000001.txt").write_text(f"{PEDESTRIAN}\n{CAR}\n")
    changed = convert_kitti(root, params, cache_dir=tmp_path / "cache")
    assert changed.directory != first.directory and "converting" in capsys.readouterr().out


def test_read_prepared_names_a_missing_or_broken_manifest(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / MANIFEST_NAME} is missing")):
        read_prepared(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / MANIFEST_NAME} cannot be read")):
        read_prepared(tmp_path)


# -- finding the KITTI folder ----------------------------------------------------------


def test_a_missing_kitti_root_is_named_with_its_origin(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=re.escape(f"KITTI root {missing} (from --data-root) does not exist")):
        prepare_kitti(KittiParams(), data_root=missing, cache_dir=tmp_path)


def test_a_kitti_root_without_training_folders_says_what_is_expected(tmp_path, monkeypatch):
    (tmp_path / "kitti").mkdir()
    monkeypatch.setenv("KITTI_ROOT", str(tmp_path / "kitti"))
    with pytest.raises(DataError, match=re.escape("(from $KITTI_ROOT) lacks training/image_2 and training/label_2")):
        prepare_kitti(KittiParams(), data_root=None, cache_dir=tmp_path)


def test_no_kitti_root_and_no_fallback_says_how_to_give_one(tmp_path, monkeypatch):
    monkeypatch.delenv("KITTI_ROOT", raising=False)
    with pytest.raises(DataError, match="pass --data-root, set KITTI_ROOT"):
        prepare_kitti(KittiParams(synthetic_fallback=False), data_root=None, cache_dir=tmp_path)


@pytest.mark.slow
def test_no_kitti_root_falls_back_to_the_synthetic_sample_with_one_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KITTI_ROOT", raising=False)
    prepared = prepare_kitti(KittiParams(synthetic_images=10, **SMALL), data_root=None, cache_dir=tmp_path)
    notices = [line for line in capsys.readouterr().out.splitlines() if line.startswith("no KITTI data")]
    assert len(notices) == 1 and "KITTI_ROOT unset" in notices[0] and str(tmp_path) in notices[0]
    assert prepared.dataset == "kitti" and prepared.images("train") + prepared.images("val") == 10
    # The default sample holds enough held-out objects per class for KITTI's AP40 (see KittiParams).
    assert attrs.fields(KittiParams).synthetic_images.default == 320


# -- the input pipeline ----------------------------------------------------------------


def make(prepared, split: str = "train", **options) -> tf.data.Dataset:
    files = prepared.train_files if split == "train" else prepared.val_files
    settings = {"batch_size": 4, "training": split == "train", "seed": 0} | options
    return make_dataset(files, image=IMAGE, labels=LabelSpec(CLASSES, 8), anchors=ANCHORS, **settings)


def test_training_batches_have_the_documented_static_shapes_and_dtypes(prepared):
    dataset = make(prepared)
    images_spec, targets_spec = dataset.element_spec
    assert images_spec.shape == (4, 64, 192, 3) and images_spec.dtype == tf.float32
    assert {key: spec.shape for key, spec in targets_spec.items()} == {
        "8": (4, 8, 24, 3, 8),
        "16": (4, 4, 12, 3, 8),
        "32": (4, 2, 6, 3, 8),
        "boxes": (4, 8, 4),
        "classes": (4, 8),
    }
    assert targets_spec["classes"].dtype == tf.int32
    batches = list(dataset)
    assert len(batches) == count_steps(10, 4, training=True) == 2  # 10 images: the last 2 are dropped
    images, targets = batches[0]
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
    objects = sum(float(tf.reduce_sum(targets[s][..., 4])) for s in ("8", "16", "32"))
    boxes = int(tf.reduce_sum(tf.cast(targets["boxes"][..., 2] > 0, tf.int32)))
    assert 0 < objects <= boxes


def test_validation_fills_its_last_batch_with_blank_images_marked_not_real(prepared):
    # Whole batches: a distribution strategy gives every replica a share of each one.
    batches = list(make(prepared, "val", batch_size=3))
    assert len(batches) == count_steps(2, 3, training=False) == 1
    images, targets = batches[0]
    assert images.shape[0] == 3 and targets["real"].numpy().tolist() == [True, True, False]
    assert not images[2].numpy().any() and not targets["boxes"][2].numpy().any()
    assert (targets["classes"][2].numpy() == -1).all()
    assert all(not targets[stride][2].numpy().any() for stride in targets if stride.isdigit())
    alone = list(make(prepared, "val", batch_size=1))  # a batch of one is always whole
    assert [batch[0].shape[0] for batch in alone] == [1, 1]
    np.testing.assert_array_equal(images[:2].numpy(), np.concatenate([batch[0].numpy() for batch in alone]))


def test_same_seed_gives_same_order_and_another_seed_another(prepared):
    def order(seed: int, augment: Augmentation | bool = False) -> list[np.ndarray]:
        return [images.numpy() for images, _ in make(prepared, seed=seed, augment=augment)]

    first, second, other = order(7), order(7), order(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    flipped, flipped_again = order(7, augment=Augmentation.flip_only()), order(7, augment=Augmentation.flip_only())
    assert all(np.array_equal(a, b) for a, b in zip(flipped, flipped_again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, flipped, strict=True))


def test_flip_mirrors_boxes_and_keeps_padding_zero(prepared):
    plain = list(make(prepared, seed=1))
    flipped = list(make(prepared, seed=1, augment=Augmentation.flip_only()))
    mirrored = 0
    for (images, targets), (images_f, targets_f) in zip(plain, flipped, strict=True):
        for index in range(images.shape[0]):
            boxes, boxes_f = targets["boxes"][index].numpy(), targets_f["boxes"][index].numpy()
            if np.array_equal(images[index].numpy(), images_f[index].numpy()):
                np.testing.assert_array_equal(boxes, boxes_f)
                continue
            np.testing.assert_allclose(images_f[index].numpy(), images[index].numpy()[:, ::-1])
            real = boxes[:, 2] > 0
            np.testing.assert_allclose(boxes_f[real, 1], 1.0 - boxes[real, 1], atol=1e-6)
            assert not boxes_f[~real].any()
            mirrored += 1
    assert 0 < mirrored < 8, "about half of the images are flipped"


def test_a_missing_shard_is_named(prepared, tmp_path):
    missing = tmp_path / "train-00000-of-00001.tfrecord"
    with pytest.raises(DataError, match=re.escape(f"TFRecord shard {missing} is missing")):
        make_dataset([missing], image=IMAGE, labels=LabelSpec(CLASSES, 8), anchors=ANCHORS, batch_size=2, training=True)


def test_records_of_another_image_size_are_refused(prepared):
    other = ImageSpec(96, 320)
    with pytest.raises(DataError, match="holds 64x192 images but the model takes 96x320"):
        make_dataset(
            prepared.val_files,
            image=other,
            labels=LabelSpec(CLASSES, 8),
            anchors=anchors_to_ratios(anchor_pixels("coco_yolov3"), other),
            batch_size=2,
            training=False,
        )


def test_fewer_train_images_than_one_batch_is_an_error():
    with pytest.raises(DataError, match="fewer than one batch of 8"):
        count_steps(5, 8, training=True)
