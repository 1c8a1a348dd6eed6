"""COCO and YOLO-txt folders convert through the one converter into the one record format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import voc_xml
from PIL import Image

from detplug.core.data import records
from detplug.core.data.pipeline import make_dataset
from detplug.core.errors import DataError
from detplug.core.plan.anchors import anchor_pixels, anchors_to_ratios
from detplug.core.plan.augmentation import Augmentation
from detplug.core.plan.specs import ImageSpec, LabelSpec, SpecError
from detplug.plugins.datasets import COCO, VOC, YOLO_TXT, CocoParams, KittiParams, VocParams, YoloTxtParams
from detplug.plugins.datasets.coco import prepare_coco
from detplug.plugins.datasets.kitti import convert_kitti
from detplug.plugins.datasets.voc import prepare_voc
from detplug.plugins.datasets.yolo_txt import prepare_yolo_txt

IMAGE = ImageSpec(32, 64)
ANCHORS = anchors_to_ratios(anchor_pixels("coco_yolov3"), IMAGE)

#: (height, width) of three source images: wide, square, very wide.
SIZES = {"a.png": (40, 80), "b.png": (60, 60), "c.png": (30, 90)}

# Hand-computed letterbox of each size into 32x64 (y1, x1, y2, x2 normalised):
#   a 40x80: scale 0.8 -> 32x64, no padding; box x 10..30, y 5..15 -> x 8..24, y 4..12.
#   b 60x60: scale 32/60 -> 32x32, 16 px gray left; box x 30..60, y 0..60 -> x 16+16..16+32, y 0..32.
#   c 30x90: scale 64/90 -> 21x64 (21.3 rounded), 5 px gray above; box x 45..90, y 0..30 -> x 32..64, y 5..26.
BOX_A = [4 / 32, 8 / 64, 12 / 32, 24 / 64]
BOX_B = [0.0, 32 / 64, 1.0, 48 / 64]
BOX_C = [5 / 32, 32 / 64, 26 / 32, 64 / 64]


def write_images(folder: Path, sizes: dict[str, tuple[int, int]] = SIZES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (height, width) in sizes.items():
        Image.new("RGB", (width, height), (200, 30, 30)).save(folder / name)


def coco_document(**changes) -> dict:
    document = {
        "images": [
            {"id": index + 1, "file_name": name, "height": height, "width": width}
            for index, (name, (height, width)) in enumerate(SIZES.items())
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [10, 5, 20, 10], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [40, 20, 30, 15], "iscrowd": 1},
            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [30, 0, 30, 60], "iscrowd": 0},
            {"id": 13, "image_id": 3, "category_id": 7, "bbox": [45, 0, 45, 30], "iscrowd": 0},
        ],
    }
    document.update(changes)
    return document


def write_coco(root: Path, document: dict | None = None) -> Path:
    write_images(root / "images")
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances.json").write_text(json.dumps(document or coco_document()))
    return root


COCO_PARAMS = {"image_size": (32, 64), "annotations": "annotations/instances.json", "images": "images"}


def by_filename(prepared) -> dict[str, dict]:
    found = {}
    for path in prepared.train_files + prepared.val_files:
        for serialized in tf.data.TFRecordDataset(str(path)):
            record = {key: value.numpy() for key, value in records.parse_all(serialized).items()}
            found[record["filename"].decode()] = record
    return found


# -- COCO -------------------------------------------------------------------------------


def test_coco_boxes_are_letterboxed_by_hand_and_crowds_become_ignore_regions(tmp_path):
    root = write_coco(tmp_path / "coco")
    prepared = prepare_coco(CocoParams(**COCO_PARAMS), data_root=root, cache_dir=tmp_path / "cache")
    assert prepared.classes == ("person", "car", "dog"), "empty classes: every category, in id order"
    found = by_filename(prepared)
    assert sorted(found) == ["images/a.png", "images/b.png", "images/c.png"]
    a, b, c = found["images/a.png"], found["images/b.png"], found["images/c.png"]
    np.testing.assert_allclose(a["boxes"][0], BOX_A, atol=1e-6)
    assert a["classes"].tolist() == [1, -1], "car, then the crowd of people as an ignore region"
    np.testing.assert_allclose(b["boxes"][0], BOX_B, atol=1e-6)
    np.testing.assert_allclose(c["boxes"][0], BOX_C, atol=1e-6)
    assert (b["classes"].tolist(), c["classes"].tolist()) == ([0], [2])
    # The original pixel boxes and sizes are kept for evaluation.
    np.testing.assert_allclose(a["source_boxes"], [[10, 5, 30, 15], [40, 20, 70, 35]])
    assert a["original_size"].tolist() == [40, 80]
    manifest = prepared.manifest
    assert manifest["source"]["format"] == "coco" and manifest["label_map"] == {"person": 0, "car": 1, "dog": 2}
    totals = {name: sum(manifest["splits"][s]["boxes_per_class"][name] for s in ("train", "val"))
              for name in prepared.classes}
    assert totals == {"person": 1, "car": 1, "dog": 1}
    assert sum(manifest["splits"][s]["ignore_regions"] for s in ("train", "val")) == 1


def test_coco_classes_pick_and_order_categories_and_drop_the_rest(tmp_path):
    root = write_coco(tmp_path / "coco")
    params = CocoParams(**COCO_PARAMS, classes=("car", "person"))
    found = by_filename(prepare_coco(params, data_root=root, cache_dir=tmp_path / "cache"))
    assert found["images/a.png"]["classes"].tolist() == [0, -1]
    assert found["images/b.png"]["classes"].tolist() == [1]
    assert found["images/c.png"]["classes"].tolist() == [], "dog is not trained: dropped"
    with pytest.raises(DataError, match="has no category cat; its categories are: person, car, dog"):
        prepare_coco(CocoParams(**COCO_PARAMS, classes=("cat",)), data_root=root, cache_dir=tmp_path / "cache")


def test_coco_val_annotations_give_the_val_split(tmp_path):
    root = write_coco(tmp_path / "coco")
    val = coco_document(images=[{"id": 5, "file_name": "v.png", "height": 20, "width": 20}], annotations=[])
    write_images(root / "val", {"v.png": (20, 20)})
    (root / "annotations" / "val.json").write_text(json.dumps(val))
    params = CocoParams(**COCO_PARAMS, val_annotations="annotations/val.json", val_images="val")
    prepared = prepare_coco(params, data_root=root, cache_dir=tmp_path / "cache")
    assert (prepared.images("train"), prepared.images("val")) == (3, 1)
    assert "val.json" in prepared.manifest["source"]["split"]


def test_coco_spec_reads_the_category_names_when_classes_is_empty(tmp_path):
    root = write_coco(tmp_path / "coco")
    spec = COCO.spec(CocoParams(**COCO_PARAMS, root=str(root)), None)
    assert spec.labels.classes == ("person", "car", "dog")
    with pytest.raises(SpecError, match="list the classes in the plan or set the dataset's 'root'"):
        COCO.spec(CocoParams(**COCO_PARAMS), None)


# -- YOLO txt ---------------------------------------------------------------------------


def write_yolo(root: Path, labels: dict[str, str], *, names: str = "names: [person, car]\n") -> Path:
    """``images/`` + ``labels/``; boxes given normalised as YOLO does."""
    write_images(root / "images")
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for name, text in labels.items():
        (root / "labels" / Path(name).with_suffix(".txt")).write_text(text)
    if names:
        (root / "data.yaml").write_text(names)
    return root


# The same boxes as the COCO test, in YOLO's normalised centre form.
YOLO_LABELS = {
    "a.png": "1 0.25 0.25 0.25 0.25\n",  # x 10..30 of 80, y 5..15 of 40
    "b.png": "0 0.75 0.5 0.5 1.0\n",  # x 30..60 of 60, y 0..60
    "c.png": "",  # an empty label file: an image without objects
}


def test_yolo_txt_boxes_match_the_hand_computed_letterbox(tmp_path):
    root = write_yolo(tmp_path / "yolo", YOLO_LABELS)
    prepared = prepare_yolo_txt(YoloTxtParams(image_size=(32, 64)), data_root=root, cache_dir=tmp_path / "cache")
    assert prepared.classes == ("person", "car") and prepared.manifest["source"]["format"] == "yolo_txt"
    found = by_filename(prepared)
    np.testing.assert_allclose(found["images/a.png"]["boxes"], [BOX_A], atol=1e-6)
    np.testing.assert_allclose(found["images/b.png"]["boxes"], [BOX_B], atol=1e-6)
    assert found["images/a.png"]["classes"].tolist() == [1] and found["images/b.png"]["classes"].tolist() == [0]
    assert found["images/c.png"]["classes"].tolist() == []


def test_yolo_txt_names_come_from_classes_txt_or_the_param_and_classes_pick_some(tmp_path):
    root = write_yolo(tmp_path / "yolo", YOLO_LABELS, names="")
    (root / "classes.txt").write_text("person\ncar\n")
    only_cars = YoloTxtParams(image_size=(32, 64), classes=("car",))
    found = by_filename(prepare_yolo_txt(only_cars, data_root=root, cache_dir=tmp_path / "cache"))
    assert found["images/a.png"]["classes"].tolist() == [0] and found["images/b.png"]["classes"].tolist() == []
    (root / "classes.txt").unlink()
    named = YoloTxtParams(image_size=(32, 64), names=("human", "vehicle"))
    assert prepare_yolo_txt(named, data_root=root, cache_dir=tmp_path / "cache").classes == ("human", "vehicle")
    with pytest.raises(DataError, match="no class names: set the dataset's 'names'"):
        prepare_yolo_txt(YoloTxtParams(image_size=(32, 64)), data_root=root, cache_dir=tmp_path / "cache")
    spec = YOLO_TXT.spec(YoloTxtParams(image_size=(32, 64), names=("human", "vehicle")), None)
    assert spec.labels.classes == ("human", "vehicle")


def test_yolo_txt_split_folders_give_the_splits_and_a_missing_label_is_background(tmp_path):
    root = tmp_path / "yolo"
    write_images(root / "images" / "train", {"a.png": (40, 80), "b.png": (60, 60)})
    write_images(root / "images" / "val", {"c.png": (30, 90)})
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text(YOLO_LABELS["a.png"])
    (root / "data.yaml").write_text("names:\n  0: person\n  1: car\n")
    prepared = prepare_yolo_txt(YoloTxtParams(image_size=(32, 64)), data_root=root, cache_dir=tmp_path / "cache")
    assert (prepared.images("train"), prepared.images("val")) == (2, 1)
    assert prepared.manifest["source"]["images_without_labels"] == 2
    assert by_filename(prepared)["images/train/b.png"]["classes"].tolist() == []


# -- Pascal VOC -------------------------------------------------------------------------


# The COCO test's boxes as the devkit writes them: 1-based, so xmin and ymin are one more
# than the pixel edge (x 10..30 is xmin 11, xmax 30); floats as LabelImg and CVAT write them.
VOC_OBJECTS = {
    "a": [("car", (11, 6, 30, 15)), ("person", (41, 21, 70, 35), 1)],  # the person is difficult
    "b": [("person", (31, 1, 60, 60), None)],  # no <difficult> element
    "c": [("dog", ("46.0", "1.0", "90.0", "30.0"))],
    "d": [],  # a background image
}


def write_voc_devkit(root: Path, lists: dict[str, str]) -> Path:
    """Annotations/ and JPEGImages/ (a, c PNG; b JPEG; d a palette PNG) and ImageSets/Main's ``lists``."""
    write_images(root / "JPEGImages", {"a.png": SIZES["a.png"], "c.png": SIZES["c.png"]})
    Image.new("RGB", (60, 60), (200, 30, 30)).save(root / "JPEGImages" / "b.jpg")
    Image.new("P", (20, 20)).save(root / "JPEGImages" / "d.png")
    sizes = {"a": (40, 80), "b": (60, 60), "c": (30, 90), "d": (20, 20)}
    (root / "Annotations").mkdir()
    for stem, objects in VOC_OBJECTS.items():
        image = next((root / "JPEGImages").glob(f"{stem}.*")).name
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(image, objects, size=sizes[stem]))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for name, stems in lists.items():
        (root / "ImageSets" / "Main" / name).write_text(stems.replace(" ", "\n") + "\n")
    return root


def test_voc_devkit_boxes_are_one_based_difficult_objects_are_ignore_regions_and_the_lists_split(tmp_path):
    # Both pairs of lists are there: train.txt and val.txt win over trainval.txt and test.txt.
    lists = {"train.txt": "a c", "val.txt": "b", "trainval.txt": "a b c", "test.txt": "d"}
    root = write_voc_devkit(tmp_path / "VOC2007", lists)
    prepared = prepare_voc(VocParams(image_size=(32, 64)), data_root=root, cache_dir=tmp_path / "cache")
    assert prepared.classes == ("car", "dog", "person"), "every object name, sorted"
    found = by_filename(prepared)
    a, b, c = (found[f"JPEGImages/{name}"] for name in ("a.png", "b.jpg", "c.png"))
    assert a["classes"].tolist() == [0, -1], "the car, then the difficult person as an ignore region"
    np.testing.assert_allclose(a["source_boxes"], [[10, 5, 30, 15], [40, 20, 70, 35]])
    np.testing.assert_allclose(a["boxes"][0], BOX_A, atol=1e-6)
    np.testing.assert_allclose(b["boxes"], [BOX_B], atol=1e-6)
    np.testing.assert_allclose(c["boxes"], [BOX_C], atol=1e-6)
    assert (b["classes"].tolist(), c["classes"].tolist()) == ([2], [1])
    assert (prepared.images("train"), prepared.images("val")) == (2, 1)
    source = prepared.manifest["source"]
    assert source["format"] == "voc" and source["split"].endswith("train.txt, " + str(root / "ImageSets/Main/val.txt"))
    assert source["unlisted_images"] == 1 and source["difficult"] == "ignore region"

    (root / "ImageSets" / "Main" / "train.txt").unlink()  # trainval.txt trains, test.txt holds out
    prepared = prepare_voc(VocParams(image_size=(32, 64)), data_root=root, cache_dir=tmp_path / "cache")
    assert (prepared.images("train"), prepared.images("val")) == (3, 1)
    assert by_filename(prepared)["JPEGImages/d.png"]["classes"].tolist() == []
    (root / "ImageSets" / "Main" / "test.txt").write_text("e\n")
    with pytest.raises(DataError, match=re.escape(f"{root / 'ImageSets/Main/test.txt'}:1: image 'e' is not an "
                                                  f"annotated image of {root}")):
        prepare_voc(VocParams(image_size=(32, 64)), data_root=root, cache_dir=tmp_path / "cache")


def test_voc_xml_beside_images_takes_classes_class_map_filename_and_splits_by_val_ratio(tmp_path):
    root = tmp_path / "labelimg"
    write_images(root / "day", {"a.png": (40, 80), "b.png": (60, 60)})
    write_images(root / "night", {"photo.png": (30, 90), "unlabelled.png": (30, 30)})
    (root / "day" / "a.xml").write_text(voc_xml("a.png", [("man", ("11.5", 6, 30, 15)), ("car", (41, 21, 70, 35))]))
    (root / "day" / "b.xml").write_text(voc_xml("b.png", [("person", (31, 1, 60, 60), 1)]))
    # Renamed after labelling: no image of its stem, so its <filename> (a Windows path) names it.
    (root / "night" / "shot.xml").write_text(voc_xml("C:\\labels\\photo.png", [("person", (46, 1, 90, 30))]))
    (root / "night" / "lost.xml").write_text(voc_xml("lost.png", [("person", (1, 1, 5, 5))]))
    params = VocParams(image_size=(32, 64), classes=("person",), class_map={"man": "person"}, val_ratio=0.34)
    prepared = prepare_voc(params, data_root=root, cache_dir=tmp_path / "cache")
    found = by_filename(prepared)
    assert sorted(found) == ["day/a.png", "day/b.png", "night/photo.png"]
    assert found["day/a.png"]["classes"].tolist() == [0], "man is trained as person, car is dropped"
    np.testing.assert_allclose(found["day/a.png"]["source_boxes"], [[10.5, 5, 30, 15]])
    assert found["day/b.png"]["classes"].tolist() == [-1] and found["night/photo.png"]["classes"].tolist() == [0]
    assert (prepared.images("train"), prepared.images("val")) == (2, 1)
    manifest = prepared.manifest
    assert manifest["source"]["split"].startswith("random: val_ratio 0.34")
    assert manifest["label_map"] == {"person": 0, "man": 0}
    assert manifest["labels_without_images"] == ["night/lost.xml"]
    assert manifest["source"]["images_without_annotations"] == 1
    # Without 'classes', every name (after class_map) sorted, read by the spec at --check time too.
    unlisted = VocParams(image_size=(32, 64), class_map={"man": "person"}, root=str(root))
    assert VOC.spec(unlisted, None).labels.classes == ("car", "person")
    with pytest.raises(SpecError, match="list the classes in the plan or set the dataset's 'root'"):
        VOC.spec(VocParams(image_size=(32, 64)), None)
    with pytest.raises(ValueError, match="'class_map' maps to bike, which is not one of the classes person"):
        VocParams(classes=("person",), class_map={"man": "bike"})


# -- the pipeline on converted data: flip by hand --------------------------------------------


def test_boxes_after_letterbox_and_after_a_flip_are_where_the_hand_computation_says(tmp_path):
    root = write_coco(tmp_path / "coco")
    params = CocoParams(**COCO_PARAMS, classes=("person", "car"), val_ratio=0.34)
    prepared = prepare_coco(params, data_root=root, cache_dir=tmp_path / "cache")
    files = prepared.train_files + prepared.val_files
    settings = {"image": IMAGE, "labels": LabelSpec(("person", "car"), 4), "anchors": ANCHORS, "batch_size": 3,
                "training": False}
    plain = make_dataset(files, **settings)
    always_flip = attrs_flip_always()
    flipped = make_dataset(files, **{**settings, "training": True}, augment=always_flip)
    (images, targets), = list(plain)
    (flipped_images, flipped_targets), = list(flipped)

    def yxhw(box):
        y1, x1, y2, x2 = box
        return [(y1 + y2) / 2, (x1 + x2) / 2, y2 - y1, x2 - x1]

    plain_boxes = {tuple(np.round(b, 5)) for b in targets["boxes"].numpy().reshape(-1, 4) if b[2] > 0}
    expected = {tuple(np.round(yxhw(b), 5)) for b in (BOX_A, [0.5, 0.5, 0.875, 0.875], BOX_B)}
    assert plain_boxes == expected, "car and crowd of a, person of b; c's dog is not trained"
    mirrored = {(y, round(1 - x, 5), h, w) for y, x, h, w in expected}
    assert {tuple(np.round(b, 5)) for b in flipped_targets["boxes"].numpy().reshape(-1, 4) if b[2] > 0} == mirrored
    # The pixels moved with the boxes: every flipped image is its plain one mirrored.
    plain_set = sorted(images.numpy(), key=lambda a: a.sum())
    flipped_set = sorted(flipped_images.numpy(), key=lambda a: a.sum())
    for original, mirrored_image in zip(plain_set, flipped_set, strict=True):
        np.testing.assert_allclose(mirrored_image, original[:, ::-1])


def attrs_flip_always() -> Augmentation:
    import attrs

    return attrs.evolve(Augmentation.none(), flip=1.0)


# -- KITTI options ------------------------------------------------------------------------


CAR = "Car 0.50 1 -1.58 100.00 20.00 200.00 70.00 1.50 1.60 3.90 1.00 1.60 20.00 -1.57"
VAN = "Van 0.00 2 -1.58 10.00 10.00 40.00 30.00 2.00 1.80 4.50 -5.00 1.60 30.00 -1.50"


def write_kitti(root: Path, labels: dict[str, list[str]]) -> Path:
    (root / "training" / "image_2").mkdir(parents=True)
    (root / "training" / "label_2").mkdir(parents=True)
    for stem, lines in labels.items():
        Image.new("RGB", (400, 100), (30, 60, 90)).save(root / "training" / "image_2" / f"{stem}.png")
        (root / "training" / "label_2" / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    return root


def test_kitti_class_map_folds_van_into_car_and_keeps_truncation_occlusion_and_pixel_boxes(tmp_path):
    root = write_kitti(tmp_path / "kitti", {"000000": [CAR, VAN], "000001": [CAR]})
    params = KittiParams(image_size=(64, 192), class_map={"Van": "Car"})
    prepared = convert_kitti(root, params, cache_dir=tmp_path / "cache", class_map=params.class_map)
    record = by_filename(prepared)["000000.png"]
    assert record["classes"].tolist() == [0, 0]
    assert record["truncated"].tolist() == [0.5, 0.0] and record["occluded"].tolist() == [1.0, 2.0]
    np.testing.assert_allclose(record["source_boxes"], [[100, 20, 200, 70], [10, 10, 40, 30]])
    assert prepared.manifest["label_map"]["Van"] == 0 and prepared.manifest["label_map"]["DontCare"] == -1
    with pytest.raises(ValueError, match="'class_map' maps to Bus, which is not one of the classes"):
        KittiParams(class_map={"Van": "Bus"})


def test_kitti_split_files_give_the_splits(tmp_path):
    root = write_kitti(tmp_path / "kitti", {f"00000{i}": [CAR] for i in range(4)})
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "train.txt").write_text("000000\n000002\n")
    (root / "ImageSets" / "val.txt").write_text("000001\n")
    params = KittiParams(image_size=(64, 192))
    prepared = convert_kitti(root, params, cache_dir=tmp_path / "cache", split_files="ImageSets")
    assert (prepared.images("train"), prepared.images("val")) == (2, 1)
    assert prepared.manifest["source"]["unlisted_images"] == 1
    (root / "ImageSets" / "val.txt").write_text("000001\n000009\n")
    with pytest.raises(DataError, match=re.escape(f"{root / 'ImageSets' / 'val.txt'}:2: image '000009' is not in")):
        convert_kitti(root, params, cache_dir=tmp_path / "cache", split_files="ImageSets")


def test_conversion_does_not_depend_on_the_number_of_workers(tmp_path):
    labels = {f"{i:06d}": [CAR, VAN] for i in range(12)}
    root = write_kitti(tmp_path / "kitti", labels)
    params = KittiParams(image_size=(64, 192))
    one = convert_kitti(root, params, cache_dir=tmp_path / "one", workers=1)
    two = convert_kitti(root, params, cache_dir=tmp_path / "two", workers=2)
    shards = lambda p: [(s["file"], s["records"], s["sha256"]) for split in ("train", "val")  # noqa: E731
                        for s in p.manifest["splits"][split]["shards"]]
    assert shards(one) == shards(two) and one.manifest["splits"] == two.manifest["splits"]


def test_the_readers_and_the_per_image_work_do_not_import_tensorflow():
    # Worker processes import these to convert images; TensorFlow would cost each seconds.
    import subprocess
    import sys

    code = ("import sys\n"
            "import detplug.core.data.source, detplug.plugins.datasets.kitti\n"
            "import detplug.plugins.datasets.coco, detplug.plugins.datasets.yolo_txt, detplug.plugins.datasets.voc\n"
            "assert 'tensorflow' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_coco_yolo_txt_and_voc_meet_the_dataset_contract(tmp_path):
    from detplug.testing import check_dataset_prepares

    coco = write_coco(tmp_path / "coco")
    check_dataset_prepares(COCO, CocoParams(**COCO_PARAMS, root=str(coco)), cache_dir=tmp_path / "cache")
    yolo = write_yolo(tmp_path / "yolo", YOLO_LABELS)
    check_dataset_prepares(YOLO_TXT, YoloTxtParams(image_size=(32, 64), root=str(yolo)), cache_dir=tmp_path / "cache")
    voc = write_voc_devkit(tmp_path / "voc", {"train.txt": "a c", "val.txt": "b"})
    check_dataset_prepares(VOC, VocParams(image_size=(32, 64), root=str(voc)), cache_dir=tmp_path / "cache")


def test_dropped_boxes_and_labels_without_images_are_counted_on_the_console_with_file_names(tmp_path, capsys):
    root = write_yolo(tmp_path / "yolo", {
        "a.png": "0 0.5 0.5 0.0 0.2\n1 0.25 0.25 0.25 0.25\n",  # a zero-width box, then a real one
        "b.png": "".join("0 0.5 0.5 0.2 0.2\n" for _ in range(4)),  # four boxes, max_boxes 3
        "c.png": "",
    })
    (root / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # its image is missing
    prepared = prepare_yolo_txt(YoloTxtParams(image_size=(32, 64), max_boxes=3), data_root=root,
                                cache_dir=tmp_path / "cache")
    printed = capsys.readouterr().out
    assert "yolo_txt: 1 boxes beyond max_boxes=3 were left out, in 1 images (images/b.png)" in printed
    assert ("yolo_txt: 1 boxes of zero width or height (after clipping to the image) were left out, in 1 images "
            "(images/a.png)") in printed
    assert "yolo_txt: 1 label files have no image and were left out (labels/orphan.txt)" in printed
    assert prepared.manifest["labels_without_images"] == ["labels/orphan.txt"]
    assert prepared.manifest["dropped_boxes"]["images"] == {"beyond_max_boxes": ["images/b.png"],
                                                            "empty_after_clipping": ["images/a.png"]}
