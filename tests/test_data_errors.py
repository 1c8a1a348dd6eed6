"""Bad input is named (file, line) and stops conversion, or is skipped and listed with skip_bad;
damaged shards stop training with a DataError naming the shard, and --verify finds them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import attrs
import pytest
import tensorflow as tf
from helpers import voc_xml
from PIL import Image

from detplug.core.data.datasets import prepare_datasets
from detplug.core.data.integrity import guarded, verify_prepared
from detplug.core.data.pipeline import make_dataset
from detplug.core.data.prepared import count_records, read_prepared
from detplug.core.errors import DataError
from detplug.core.plan.anchors import anchor_pixels, anchors_to_ratios
from detplug.core.plan.check import static_check
from detplug.core.plan.plan_file import load_plan, resolve_components
from detplug.core.plan.specs import ImageSpec, LabelSpec
from detplug.plugins.datasets import CocoParams, KittiParams, VocParams, YoloTxtParams
from detplug.plugins.datasets.coco import prepare_coco
from detplug.plugins.datasets.kitti import convert_kitti
from detplug.plugins.datasets.voc import prepare_voc
from detplug.plugins.datasets.yolo_txt import prepare_yolo_txt
from detplug.registry import Registry

CAR = "Car 0.00 0 -1.58 100.00 20.00 200.00 70.00 1.50 1.60 3.90 1.00 1.60 20.00 -1.57"
PARAMS = KittiParams(image_size=(32, 64), max_boxes=8)
SKIP_ADVICE = "pass --skip-bad (skip_bad=True)"


def kitti_line(kind: str = "Car", x1="100.00", y1="20.00", x2="200.00", y2="70.00") -> str:
    return f"{kind} 0.00 0 -1.58 {x1} {y1} {x2} {y2} 1.50 1.60 3.90 1.00 1.60 20.00 -1.57"


def write_kitti(root: Path, labels: dict[str, list[str]], *, train: list[str] | None = None) -> Path:
    """100x400 images, one per label file; ``train`` puts those stems in train.txt, the rest in val.txt."""
    (root / "training" / "image_2").mkdir(parents=True, exist_ok=True)
    (root / "training" / "label_2").mkdir(parents=True, exist_ok=True)
    for stem, lines in labels.items():
        Image.new("RGB", (400, 100), (30, 60, 90)).save(root / "training" / "image_2" / f"{stem}.png")
        (root / "training" / "label_2" / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    if train is not None:
        (root / "ImageSets").mkdir(exist_ok=True)
        (root / "ImageSets" / "train.txt").write_text("\n".join(train) + "\n")
        (root / "ImageSets" / "val.txt").write_text("\n".join(s for s in labels if s not in train) + "\n")
    return root


def label(root: Path, stem: str) -> Path:
    return root / "training" / "label_2" / f"{stem}.txt"


def convert(root: Path, cache: Path, params: KittiParams = PARAMS, **options):
    split_files = "ImageSets" if (root / "ImageSets").is_dir() else ""
    return convert_kitti(root, params, cache_dir=cache, split_files=split_files, **options)


# -- each kind of bad input, named ------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Car 0.00 0 -1.58 100.00 20.00 200.00", ":1: expected 15 columns (type truncated occluded"),
        (kitti_line(x1="abc"), ":1: column 'x1' must be a number (got 'abc')"),
        (kitti_line(y2="nan"), ":1: column 'y2' must be a number (got 'nan')"),
        (kitti_line("Bus"), ":1: unknown class 'Bus'; the known classes are Car, Pedestrian, Cyclist, DontCare and "
                            "KITTI's own types Car, Van, Truck, Pedestrian, Person_sitting, Cyclist, Tram, Misc"),
        (kitti_line(x1="300.00"), ":1: the box (x1 300, y1 20, x2 200, y2 70) has right < left or bottom < top"),
        (kitti_line(y1="80.00"), ":1: the box (x1 100, y1 80, x2 200, y2 70) has right < left or bottom < top"),
        (kitti_line(x2="401.50"), ":1: the box (x1 100, y1 20, x2 401.5, y2 70) lies outside the 400x100 image "
                                  "by more than 1 px"),
        (kitti_line(y1="-2.00"), ":1: the box (x1 100, y1 -2, x2 200, y2 70) lies outside the 400x100 image"),
    ],
)
def test_a_bad_label_line_stops_conversion_naming_file_and_line(tmp_path, line, message):
    root = write_kitti(tmp_path / "kitti", {"000000": [CAR], "000001": [line]})
    with pytest.raises(DataError, match=re.escape(f"{label(root, '000001')}{message}")) as error:
        convert(root, tmp_path / "cache")
    assert SKIP_ADVICE in str(error.value)
    assert not list((tmp_path / "cache" / "records").iterdir()), "nothing half-written is left"


def test_kittis_own_types_are_dropped_silently_empty_files_and_the_1px_tolerance_are_fine(tmp_path):
    others = [kitti_line(kind) for kind in ("Van", "Truck", "Person_sitting", "Tram", "Misc")]
    root = write_kitti(tmp_path / "kitti", {"000000": [CAR, *others], "000001": [],
                                            "000002": [kitti_line(x1="-0.90", x2="400.90", y2="100.50")]})
    prepared = convert(root, tmp_path / "cache")
    boxes = {name: sum(prepared.manifest["splits"][s]["boxes_per_class"][name] for s in ("train", "val"))
             for name in prepared.classes}
    assert boxes == {"Car": 2, "Pedestrian": 0, "Cyclist": 0}
    assert prepared.images("train") + prepared.images("val") == 3


def test_an_unreadable_image_is_named(tmp_path):
    root = write_kitti(tmp_path / "kitti", {"000000": [CAR], "000001": [CAR]})
    broken = root / "training" / "image_2" / "000001.png"
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated PNG
    with pytest.raises(DataError, match=re.escape(f"{broken} cannot be read as an image")):
        convert(root, tmp_path / "cache")


def test_every_problem_of_the_first_bad_image_is_listed_and_conversion_stops_there(tmp_path):
    bad = [kitti_line("Bus"), "Car 1 2 3", kitti_line(x1="300.00")]
    labels = {"000000": [CAR], "000001": bad, "000002": [kitti_line("Tractor")], "000003": [CAR]}
    root = write_kitti(tmp_path / "kitti", labels, train=["000000", "000001", "000002"])
    with pytest.raises(DataError) as error:
        convert(root, tmp_path / "cache")
    message = str(error.value)
    first = label(root, "000001")
    assert message.startswith(f"train image 000001.png ({root / 'training' / 'image_2' / '000001.png'}) has 3 problems")
    for line_number in (1, 2, 3):
        assert f"\n  {first}:{line_number}: " in message
    assert "000002" not in message, "conversion stopped at the first bad image"


def test_a_failed_conversion_keeps_the_records_already_converted(tmp_path):
    root = write_kitti(tmp_path / "kitti", {"000000": [CAR], "000001": [CAR]})
    good = convert(root, tmp_path / "cache")
    label(root, "000001").write_text(kitti_line("Bus") + "\n")
    with pytest.raises(DataError, match="unknown class 'Bus'"):
        convert(root, tmp_path / "cache")
    assert read_prepared(good.directory).manifest == good.manifest and verify_prepared(good) == []
    assert [p.name for p in (tmp_path / "cache" / "records").iterdir()] == [good.directory.name]


def test_skip_bad_leaves_bad_images_out_counts_and_lists_them_in_the_manifest(tmp_path, capsys):
    labels = {"000000": [CAR], "000001": [kitti_line("Bus"), "Car 1 2"], "000002": [CAR], "000003": [CAR]}
    root = write_kitti(tmp_path / "kitti", labels, train=["000000", "000001", "000002"])
    broken = root / "training" / "image_2" / "000003.png"
    broken.write_bytes(b"not a png")
    prepared = convert(root, tmp_path / "cache", skip_bad=True)
    assert (prepared.images("train"), prepared.images("val")) == (2, 0)
    skipped = prepared.manifest["skipped"]
    assert [(s["image"], s["split"], len(s["reasons"])) for s in skipped] == [
        (str(root / "training" / "image_2" / "000001.png"), "train", 2),
        (str(broken), "val", 1),
    ]
    assert skipped[0]["reasons"][0].startswith(f"{label(root, '000001')}:1: unknown class 'Bus'")
    assert prepared.manifest["skip_bad"] is True and prepared.skipped == skipped
    assert "skipped 2 bad images" in capsys.readouterr().out
    # Training later (without skip_bad) reuses these records: the source is unchanged.
    assert convert(root, tmp_path / "cache").directory == prepared.directory


# -- the other formats name their bad input too -------------------------------------------


def write_yolo(root: Path, text: str) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (80, 40)).save(root / "images" / f"{name}.png")
        (root / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "b.txt").write_text(text)
    (root / "data.yaml").write_text("names: [person, car]\n")
    return root


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n", ":2: unknown class id 7; the known classes are 0 person, 1 car"),
        ("0 0.5 0.5 0.2\n", ":1: expected 5 columns (class cx cy w h), found 4"),
        ("1.5 0.5 0.5 0.2 0.2\n", ":1: column 'class' must be a whole number (got '1.5')"),
        ("0 0.5 half 0.2 0.2\n", ":1: column 'cy' must be a number (got 'half')"),
        ("0 0.95 0.5 0.2 0.2\n", ":1: the box (x1 68, y1 16, x2 84, y2 24) lies outside the 80x40 image"),
    ],
)
def test_bad_yolo_label_lines_are_named(tmp_path, text, message):
    root = write_yolo(tmp_path / "yolo", text)
    with pytest.raises(DataError, match=re.escape(f"{root / 'labels' / 'b.txt'}{message}")):
        prepare_yolo_txt(YoloTxtParams(image_size=(32, 64)), data_root=root, cache_dir=tmp_path / "cache")


def write_coco(root: Path, annotations: list[dict], images: list[dict] | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (80, 40)).save(root / "images" / "a.png")
    Image.new("RGB", (80, 40)).save(root / "images" / "b.png")
    images = images or [{"id": 1, "file_name": "a.png", "height": 40, "width": 80},
                        {"id": 2, "file_name": "b.png", "height": 40, "width": 80}]
    document = {"images": images, "categories": [{"id": 1, "name": "person"}], "annotations": annotations}
    (root / "instances.json").write_text(json.dumps(document))
    return root


COCO_PARAMS = CocoParams(image_size=(32, 64), annotations="instances.json", images="images")


@pytest.mark.parametrize(
    ("annotation", "image", "message"),
    [
        ({"category_id": 5, "bbox": [1, 1, 5, 5]}, None, " annotation 9: unknown category_id 5; the known "
                                                          "categories are 1 person"),
        ({"category_id": 1, "bbox": [1, 1, 5]}, None, " annotation 9: 'bbox' must be 4 numbers [x, y, width, "
                                                      "height] (got [1, 1, 5])"),
        ({"category_id": 1, "bbox": [10, 10, -5, 5]}, None, " annotation 9: the box (x1 10, y1 10, x2 5, y2 15) "
                                                            "has right < left"),
        ({"category_id": 1, "bbox": [1, 1, 5, 5]}, {"file_name": "gone.png"}, "gone.png is missing"),
        ({"category_id": 1, "bbox": [1, 1, 5, 5]}, {"height": 50}, "b.png is 80x40 px but"),
    ],
)
def test_bad_coco_annotations_and_images_are_named(tmp_path, annotation, image, message):
    images = [{"id": 1, "file_name": "a.png", "height": 40, "width": 80},
              {"id": 2, "file_name": "b.png", "height": 40, "width": 80, **(image or {})}]
    root = write_coco(tmp_path / "coco", [{"id": 9, "image_id": 2, "iscrowd": 0, **annotation}], images)
    with pytest.raises(DataError, match=re.escape(message)) as error:
        prepare_coco(COCO_PARAMS, data_root=root, cache_dir=tmp_path / "cache")
    if "annotation" in message:
        assert str(root / "instances.json") + " annotation 9" in str(error.value)


def test_a_coco_file_that_is_not_json_is_named_with_its_line(tmp_path):
    root = write_coco(tmp_path / "coco", [])
    (root / "instances.json").write_text('{"images": [],\n "categories": [,]}')
    with pytest.raises(DataError, match=re.escape(f"{root / 'instances.json'}:2: not valid JSON")):
        prepare_coco(COCO_PARAMS, data_root=root, cache_dir=tmp_path / "cache")


def write_labelimg(root: Path, xml_of_b: str) -> Path:
    """Two 80x40 images with LabelImg's XML beside them; b's XML is ``xml_of_b``."""
    root.mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (80, 40)).save(root / f"{name}.png")
    (root / "a.xml").write_text(voc_xml("a.png", [("dog", (11, 6, 30, 15))], size=(40, 80)))
    (root / "b.xml").write_text(xml_of_b)
    return root


VOC_PARAMS = VocParams(image_size=(32, 64))


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<annotation>\n  <object>\n    <name>dog</name>\n  </annotation>\n",
         ":4: malformed XML at column 5 (mismatched tag)"),
        ("<html/>", ": not a VOC annotation (its root element is <html>, expected <annotation>)"),
        (voc_xml("b.png", [("dog", (1, "ten", 9, 9))]), " object 1 ('dog'): <bndbox> <ymin> must be a number (got "
                                                        "'ten')"),
        (voc_xml("b.png", [("dog", (1, 1, 9, 9))]).replace("<xmax>9</xmax>", ""), " object 1 ('dog'): <bndbox> has "
                                                                                  "no <xmax>"),
        (voc_xml("b.png", [("dog", (1, 1, 9, 9), "yes")]), " object 1 ('dog'): <difficult> must be 0 or 1 (got "
                                                           "'yes')"),
        (voc_xml("b.png", [("", (1, 1, 9, 9))]), " object 1: it has no <name>"),
        (voc_xml("b.png", [("dog", (1, 1, 90, 20))]), " object 1 ('dog'): the box (x1 0, y1 0, x2 90, y2 20) lies "
                                                      "outside the 80x40 image by more than 1 px"),
        (voc_xml("b.png", [], size=(50, "eighty")), ": <size> needs whole-number <width> and <height> (width "
                                                    "'eighty', height '50')"),
    ],
)
def test_bad_voc_annotations_are_named_with_their_file(tmp_path, xml, message):
    root = write_labelimg(tmp_path / "photos", xml)
    with pytest.raises(DataError, match=re.escape(f"{root / 'b.xml'}{message}")) as error:
        prepare_voc(VOC_PARAMS, data_root=root, cache_dir=tmp_path / "cache")
    assert SKIP_ADVICE in str(error.value)


def test_a_voc_size_that_disagrees_with_the_image_is_named_and_skip_bad_lists_the_bad_files(tmp_path):
    root = write_labelimg(tmp_path / "photos", voc_xml("b.png", [("cat", (1, 1, 9, 9), 1)], size=(50, 80)))
    with pytest.raises(DataError, match=re.escape(f"{root / 'b.png'} is 80x40 px but {root / 'b.xml'} gives it as "
                                                  f"80x50")):
        prepare_voc(VOC_PARAMS, data_root=root, cache_dir=tmp_path / "cache")
    Image.new("RGB", (80, 40)).save(root / "c.png")
    (root / "c.xml").write_text("<annotation><object></annotation>")
    Image.new("RGB", (80, 40)).save(root / "d.png")
    (root / "d.xml").write_text(voc_xml("d.png", [("cat", (1, 1, 9, 9), 1), ("dog", (2, 2, 9, 9))], size=(40, 80)))
    prepared = prepare_voc(attrs.evolve(VOC_PARAMS, val_ratio=0.5), data_root=root, cache_dir=tmp_path / "cache",
                           skip_bad=True)
    assert prepared.classes == ("cat", "dog"), "the names of the bad files count too"
    skipped = {Path(entry["image"]).name: entry["reasons"] for entry in prepared.skipped}
    assert skipped == {"b.png": [f"{root / 'b.png'} is 80x40 px but {root / 'b.xml'} gives it as 80x50"],
                       "c.png": [f"{root / 'c.xml'}:1: malformed XML at column 23 (mismatched tag)"]}
    assert prepared.images("train") + prepared.images("val") == 2
    ignore_regions = sum(prepared.manifest["splits"][split]["ignore_regions"] for split in ("train", "val"))
    assert ignore_regions == 1, "d's difficult cat"


def test_voc_split_lists_that_overlap_and_images_that_cannot_be_told_apart_are_named(tmp_path):
    root = write_labelimg(tmp_path / "photos", voc_xml("renamed.png", [("dog", (1, 1, 9, 9))]))
    lists = root / "ImageSets" / "Main"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("a\nb\n")
    (lists / "val.txt").write_text("b\n")
    with pytest.raises(DataError, match=re.escape(f"{lists / 'train.txt'} and {lists / 'val.txt'} both list 1 "
                                                  f"images (b.png)")):
        prepare_voc(VOC_PARAMS, data_root=root, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match=re.escape(f"image_sets = 'splits': {root / 'splits'} is not a folder")):
        prepare_voc(attrs.evolve(VOC_PARAMS, image_sets="splits"), data_root=root, cache_dir=tmp_path / "cache")
    Image.new("RGB", (80, 40)).save(root / "b.jpg")  # b.xml's <filename> names neither b.png nor b.jpg
    with pytest.raises(DataError, match=re.escape(f"{root / 'b.xml'}: several images have its stem (b.jpg, b.png) "
                                                  f"and its <filename> names none of them")):
        prepare_voc(attrs.evolve(VOC_PARAMS, image_sets=""), data_root=root, cache_dir=tmp_path / "cache")


# -- damaged shards --------------------------------------------------------------------------


IMAGE = ImageSpec(32, 64)
ANCHORS = anchors_to_ratios(anchor_pixels("coco_yolov3"), IMAGE)


@pytest.fixture(scope="module")
def clean_records(tmp_path_factory):
    """12 images in train shards of 3 records (so there is a shard to name among several)."""
    folder = tmp_path_factory.mktemp("clean")
    root = write_kitti(folder / "kitti", {f"{i:06d}": [CAR] for i in range(12)}, train=[f"{i:06d}" for i in range(9)])
    return convert(root, folder / "cache", attrs.evolve(PARAMS, records_per_shard=3))


@pytest.fixture
def prepared(clean_records, tmp_path):
    copy = tmp_path / clean_records.directory.name
    shutil.copytree(clean_records.directory, copy)
    return read_prepared(copy)


def batches(prepared):
    dataset = make_dataset(prepared.train_files, image=IMAGE, labels=LabelSpec(PARAMS.classes, 8), anchors=ANCHORS,
                           batch_size=2, training=True, seed=0)
    return guarded(dataset, prepared.train_files)


def test_a_byte_flipped_shard_stops_iteration_with_a_data_error_naming_it(prepared):
    assert len(prepared.train_files) == 3
    damaged = prepared.train_files[1]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(DataError, match=re.escape(f"TFRecord shard {damaged} is damaged (corrupted record at")):
        list(batches(prepared))


def test_a_truncated_shard_stops_iteration_with_a_data_error_naming_it(prepared):
    damaged = prepared.train_files[2]
    damaged.write_bytes(damaged.read_bytes()[:-100])
    with pytest.raises(DataError, match=re.escape(f"TFRecord shard {damaged} is damaged (truncated record at")):
        list(batches(prepared))


def test_a_shard_truncated_after_conversion_is_caught_when_the_records_are_opened(prepared):
    damaged = prepared.train_files[0]
    size = damaged.stat().st_size
    damaged.write_bytes(damaged.read_bytes()[:-100])
    with pytest.raises(DataError, match=re.escape(f"shard {damaged} is {size - 100:,} bytes but "
                                                  f"{prepared.directory / 'manifest.json'} says {size:,}: it changed "
                                                  f"after conversion")):
        read_prepared(prepared.directory)


def test_count_records_walks_the_tfrecord_framing(tmp_path):
    path = tmp_path / "three.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for payload in (b"", b"a" * 5, b"b" * 300):
            writer.write(payload)
    # 16 bytes of framing per record: 3 * 16 + 0 + 5 + 300
    assert path.stat().st_size == 353 and count_records(path) == 3
    path.write_bytes(path.read_bytes()[:-1])
    assert count_records(path) is None
    path.write_bytes(b"")
    assert count_records(path) == 0


def test_a_shard_that_lost_whole_records_is_caught_by_its_count_when_opened(prepared):
    # A manifest without byte sizes (written before they were recorded), and a shard that
    # lost its last record cleanly: only the count of records tells.
    manifest_path = prepared.directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for shard in manifest["splits"]["train"]["shards"]:
        shard.pop("bytes")
    manifest_path.write_text(json.dumps(manifest))
    damaged = prepared.train_files[0]
    listed = manifest["splits"]["train"]["shards"][0]["records"]
    kept = list(tf.data.TFRecordDataset(str(damaged)).as_numpy_iterator())[:-1]
    with tf.io.TFRecordWriter(str(damaged)) as writer:
        for record in kept:
            writer.write(record)
    with pytest.raises(DataError, match=re.escape(f"shard {damaged} holds {listed - 1:,} record")):
        read_prepared(prepared.directory)


def test_guarded_iteration_of_good_shards_yields_every_batch(prepared):
    assert len(list(batches(prepared))) == 4


def test_verify_finds_every_damaged_shard_and_passes_good_ones(prepared):
    assert verify_prepared(prepared) == []
    flipped, truncated, missing = prepared.train_files
    data = bytearray(flipped.read_bytes())
    data[-10] ^= 0x01
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-7])
    missing.unlink()
    problems = verify_prepared(prepared)
    assert problems[0].startswith(f"{flipped} has sha256 ")
    assert problems[1].startswith(f"{flipped} is damaged after 2 records (corrupted record at")
    assert problems[2].startswith(f"{truncated} has sha256 ")
    assert problems[3].startswith(f"{truncated} is damaged after 2 records (truncated record at")
    assert problems[4] == f"{missing} is missing" and len(problems) == 5


# -- prepare_datasets: the plan's datasets, skip_bad and verify ------------------------------


PLAN = """
name = "prepare"
[model]
backbone = {{ name = "darknet53", width = 0.125, depth = 0.1 }}
head = {{ name = "yolov3_fpn", width = 0.125 }}
decoder = {{ name = "yolo" }}
anchors = "coco_yolov3"
[datasets.street]
name = "kitti"
root = "{root}"
split_files = "ImageSets"
image_size = [32, 64]
max_boxes = 8
[loss_combos.standard]
ciou = 1.0
objectness = 1.0
category = 1.0
[train]
trainer = "graph"
batch_size = 2
[[periods]]
dataset = "street"
epochs = 1
learning_rate = 1e-3
losses = "standard"
save = true
"""


def test_prepare_datasets_converts_the_plans_datasets_skips_bad_images_and_verifies(tmp_path):
    root = write_kitti(tmp_path / "kitti", {"000000": [CAR], "000001": [kitti_line("Bus")], "000002": [CAR]},
                       train=["000000", "000001"])
    (tmp_path / "plan.toml").write_text(PLAN.format(root=root))
    plan = load_plan(tmp_path / "plan.toml")
    checked = static_check(plan, resolve_components(plan, Registry.discover()))
    with pytest.raises(DataError, match="unknown class 'Bus'"):
        prepare_datasets(checked, data_root=None, cache_dir=tmp_path / "cache")
    prepared = prepare_datasets(checked, data_root=None, cache_dir=tmp_path / "cache", skip_bad=True, verify=True)
    street = prepared["street"]
    assert (street.images("train"), street.images("val"), len(street.skipped)) == (1, 1, 1)
    # A byte flipped in place keeps the shard's size, so only --verify's checksum finds it.
    data = bytearray(street.val_files[0].read_bytes())
    data[-10] ^= 0x01
    street.val_files[0].write_bytes(bytes(data))
    with pytest.raises(DataError, match=re.escape(f"dataset 'street': 2 problems in {street.directory}")):
        prepare_datasets(checked, data_root=None, cache_dir=tmp_path / "cache", verify=True)
    forced = prepare_datasets(checked, data_root=None, cache_dir=tmp_path / "cache", skip_bad=True, force=True,
                              verify=True)
    assert forced["street"].directory == street.directory and verify_prepared(forced["street"]) == []
