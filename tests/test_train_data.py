"""run.py train --data PATH: the dataset recognised from its layout, a plan written from a
template into the run folder, trained as any plan and resumed through that plan file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib
from helpers import kill_at, make_plugin_package, pythonpath_env, run_cli, voc_xml, write_yolo_shapes
from PIL import Image

from detplug.core.data.layouts import detect_layout, typical_aspect, typical_long_side
from detplug.core.errors import DataError, PlanError
from detplug.core.plan.check import static_check
from detplug.core.plan.from_data import (
    data_image_size,
    data_plan,
    plan_name,
    template_names,
    tile_hint,
    tile_image_size,
    tile_table,
    write_data_plan,
)
from detplug.core.plan.plan_file import load_plan, resolve_components
from detplug.plugins.datasets import TileParams
from detplug.registry import Registry


def write_coco(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        (root / split).mkdir()
        Image.new("RGB", (40, 30)).save(root / split / "a.png")
        document = {"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 10, 10],
                                     "area": 100, "iscrowd": 0}],
                    "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}]}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))
    return root


def test_a_yolo_folder_its_data_yaml_a_coco_file_or_folder_and_a_kitti_root_are_recognised(tmp_path):
    yolo = write_yolo_shapes(tmp_path / "shapes", train=2, val=1)
    for path in (yolo, yolo / "data.yaml"):
        layout = detect_layout(path)
        assert (layout.component, layout.classes) == ("yolo_txt", ("red", "green", "blue", "yellow", "cyan"))
        assert layout.params["root"] == str(yolo)
    (yolo / "data.yaml").unlink()
    (yolo / "classes.txt").write_text("a\nb\n")
    assert detect_layout(yolo).classes == ("a", "b")  # images/ and labels/, names in classes.txt

    coco = write_coco(tmp_path / "coco")
    folder = detect_layout(coco)
    assert folder.component == "coco" and folder.classes == ("person", "car")  # in category id order
    assert folder.params["annotations"].endswith("instances_train2017.json")
    assert folder.params["images"] == str(coco / "train2017") and folder.params["val_images"] == str(coco / "val2017")
    single = detect_layout(coco / "annotations" / "instances_val2017.json")
    assert single.params["images"] == str(coco / "val2017") and "val_annotations" not in single.params

    kitti = tmp_path / "kitti"
    (kitti / "training" / "image_2").mkdir(parents=True)
    (kitti / "training" / "label_2").mkdir()
    assert detect_layout(kitti).component == "kitti"


def test_a_voc_devkit_and_a_folder_of_images_with_xml_beside_them_are_recognised(tmp_path):
    devkit = tmp_path / "VOC2012"
    (devkit / "Annotations").mkdir(parents=True)
    (devkit / "JPEGImages").mkdir()
    Image.new("RGB", (40, 30)).save(devkit / "JPEGImages" / "a.jpg")
    (devkit / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", [("dog", (1, 1, 9, 9)), ("cat", (2, 2, 8, 8), 1)]))
    layout = detect_layout(devkit)
    assert (layout.component, layout.params, layout.classes) == ("voc", {"root": str(devkit)}, ("cat", "dog"))
    assert layout.images == devkit / "JPEGImages" and typical_aspect(layout) == (pytest.approx(40 / 30), 1)
    assert data_plan(layout, model="small", name="v")["datasets"]["data"]["classes"] == ["cat", "dog"]

    labelimg = tmp_path / "photos"
    (labelimg / "day").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(labelimg / "day" / "b.png")
    (labelimg / "day" / "b.xml").write_text(voc_xml("b.png", [("person", (1, 1, 9, 9))]))
    layout = detect_layout(labelimg)
    assert (layout.component, layout.classes, layout.images) == ("voc", ("person",), labelimg)
    (labelimg / "day" / "b.xml").write_text(voc_xml("b.png", []))
    with pytest.raises(DataError, match="a VOC folder, but none of its 1 XML files names an object"):
        detect_layout(labelimg)


def test_a_folder_that_fits_no_layout_is_one_sentence_listing_the_layouts(tmp_path):
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "a.png")
    with pytest.raises(DataError) as error:
        detect_layout(tmp_path / "photos")
    message = str(error.value)
    assert message.startswith(f"--data {tmp_path / 'photos'}: not a dataset layout detplug recognises; give a YOLO "
                              f"data.yaml")
    assert "COCO instances JSON" in message and "KITTI root" in message and "VOC devkit" in message
    assert "\n" not in message
    with pytest.raises(DataError, match="no such file or folder"):
        detect_layout(tmp_path / "missing")


def test_the_plan_takes_the_template_the_data_and_yolov5s_gain_rules(tmp_path):
    assert {"small", "yolov3", "yolov4"} <= set(template_names())
    layout = detect_layout(write_yolo_shapes(tmp_path / "shapes", train=2, val=1))
    plan = data_plan(layout, model="small", name="shapes_small", epochs=3, image_size=(64, 96), batch=4)
    data = plan["datasets"]["data"]
    assert data["name"] == "yolo_txt" and data["image_size"] == [64, 96] and len(data["classes"]) == 5
    assert plan["periods"][0]["epochs"] == 3 and plan["train"]["batch_size"] == 4
    assert plan["evaluation"]["evaluator"] == "coco_map"
    losses = plan["loss_combos"]["standard"]
    assert losses["objectness"]["weight"] == round(64 * 96 / 640**2, 4) and losses["category"] == round(0.5 * 5 / 80, 4)
    # COCO's anchors (pixels at 416x416) scaled by the long side, 96 / 416: YOLOv3's (116, 90)
    # at stride 32 -> (27, 21)
    assert plan["model"]["anchors"]["32"][0] == [27, 21]
    assert plan_name(tmp_path / "shapes" / "data.yaml", "small") == "shapes_small"
    with pytest.raises(PlanError, match="--model tiny: no such template; the templates are dense, small, yolov3, yolov4"):
        data_plan(layout, model="tiny", name="x")


@pytest.mark.parametrize("model", template_names())
def test_every_template_gives_a_plan_that_passes_the_static_check(tmp_path, model):
    layout = detect_layout(write_yolo_shapes(tmp_path / "shapes", train=2, val=1))
    plan = data_plan(layout, model=model, name=f"shapes_{model}", epochs=3, image_size=(64, 64), batch=4)
    path = write_data_plan(plan, tmp_path / "run", command="test")
    loaded = load_plan(path)
    result = static_check(loaded, resolve_components(loaded, Registry.discover()))
    assert result.chain.image.height == 64 and set(result.chain.decoded) == {8, 16, 32}


def test_the_input_size_keeps_the_templates_long_side_and_takes_the_other_from_the_datas_shape(tmp_path):
    kitti = tmp_path / "kitti"
    (kitti / "training" / "image_2").mkdir(parents=True)
    (kitti / "training" / "label_2").mkdir()
    for index, size in enumerate([(1242, 375), (1224, 370), (1242, 375)]):
        Image.new("RGB", size).save(kitti / "training" / "image_2" / f"{index:06d}.png")
    aspect = typical_aspect(detect_layout(kitti))
    assert aspect == (pytest.approx(1242 / 375), 3)  # the median of 3.308, 3.312, 3.312
    # 320 / 3.312 = 96.6 -> 96; 416 / 3.312 = 125.6 -> 128 (the nearest multiples of 32)
    assert data_image_size("small", aspect)[0] == (96, 320)
    size, why = data_image_size("yolov3", aspect)
    assert size == (128, 416) and "long side 416" in why and "median aspect 3.31 (width / height, 3 images)" in why
    assert data_image_size("small", (0.75, 9))[0] == (320, 256)  # portrait: 320 x 0.75 = 240 -> 256
    assert data_image_size("small", (1.0, 9))[0] == (320, 320)
    assert data_image_size("small", None) == ((320, 320), "template 'small''s (no image to measure the data's shape)")
    assert typical_aspect(detect_layout(write_coco(tmp_path / "coco"))) == (pytest.approx(40 / 30), 1)


def test_a_written_plan_is_never_overwritten_by_a_different_one(tmp_path):
    layout = detect_layout(write_yolo_shapes(tmp_path / "shapes", train=2, val=1))
    first = write_data_plan(data_plan(layout, model="small", name="s"), tmp_path / "run", command="run.py")
    assert write_data_plan(data_plan(layout, model="small", name="s"), tmp_path / "run", command="run.py") == first
    with pytest.raises(PlanError, match=r"plan\.toml exists and differs from the plan this --data command gives"):
        write_data_plan(data_plan(layout, model="small", name="s", epochs=7), tmp_path / "run", command="run.py")
    assert tomllib.loads(first.read_text())["periods"][0]["epochs"] == 30


def test_tile_gives_the_dataset_its_tile_table_and_a_square_input_of_the_tiles_size(tmp_path):
    layout = detect_layout(write_yolo_shapes(tmp_path / "shapes", train=2, val=1))
    assert tile_table(None, None) is None and tile_table(320, None) == {"size": 320}
    size, why = tile_image_size(300)  # 300 / 32 = 9.4 -> 288
    assert size == (288, 288) and why.startswith("--tile 300's square")
    plan = data_plan(layout, model="small", name="s", image_size=size, tile=tile_table(300, 0.25))
    path = write_data_plan(plan, tmp_path / "run", command="run.py")
    params = resolve_components(load_plan(path), Registry.discover())["datasets.data"].params
    assert params.tile == TileParams(size=300, overlap=0.25) and params.image_size == (288, 288)


@pytest.mark.parametrize("size, overlap, words", [
    (None, 0.3, "--overlap 0.3 goes with --tile SIZE"),
    (0, None, "--tile 0: give the tiles' side in pixels"),
    (320, 1.0, "--overlap 1: give the share of a tile its neighbour also covers"),
])
def test_a_bad_tile_or_overlap_is_one_sentence(size, overlap, words):
    with pytest.raises(PlanError, match=words):
        tile_table(size, overlap)


def test_without_tile_one_line_says_when_the_median_image_is_twice_the_inputs_long_side(tmp_path):
    folder = tmp_path / "aerial"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "classes.txt").write_text("car\n")
    for index, size in enumerate([(1000, 700), (700, 1000), (1200, 900)]):
        Image.new("RGB", size).save(folder / "images" / f"{index}.png")
    long_side = typical_long_side(detect_layout(folder))
    assert long_side == (1000, 3)  # the median of 1000, 1000, 1200
    hint = tile_hint((320, 320), long_side)
    assert hint is not None and "1000 px (3 images read), 3.1x the input's 320" in hint and "--tile 320" in hint
    assert tile_hint((320, 512), long_side) is None  # 1000 < 2 x 512
    assert tile_hint((320, 320), None) is None


@pytest.mark.slow(seconds=60)
def test_train_data_writes_plan_toml_and_the_run_resumes_through_it(tmp_path):
    data = write_yolo_shapes(tmp_path / "shapes", train=8, val=4)
    workdir = tmp_path / "run"
    tiny = ["--set", "model.backbone.width=0.125", "--set", "model.head.width=0.125"]
    common = ["--workdir", str(workdir), "--cache-dir", str(tmp_path / "cache")]
    killer = pythonpath_env(make_plugin_package(tmp_path / "killer", "killer",
                                                {"killer": kill_at("detplug_epoch_end", "epoch == 1")}))
    killed = run_cli("train", "--data", str(data), "--epochs", "2", "--image-size", "64", "96", "--batch", "4", *tiny,
                     *common, env=killer)
    assert killed.returncode == -9, killed.stderr[-3000:]
    plan_file = workdir / "plan.toml"
    assert f"--data {data}: YOLO dataset {data} (data.yaml: 5 classes); template 'small'; the plan is {plan_file}" \
        in killed.stdout
    plan = tomllib.loads(plan_file.read_text())
    assert plan["name"] == "shapes_small" and plan["model"]["backbone"]["width"] == 0.125  # --set is in the file
    # The written plan, alone, resumes the run: nothing of the first command is needed again.
    resumed = run_cli("--plan", str(plan_file), *common)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming plan 'shapes_small' after epoch 1" in resumed.stdout
    assert json.loads((workdir / "checkpoints" / "state.json").read_text())["epoch"] == 2
