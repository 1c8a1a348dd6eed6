import pytest

from detplug.core.plan.anchors import AnchorError, anchor_pixels, anchors_to_ratios
from detplug.core.plan.specs import ImageSpec


def test_coco_yolov3_pool_is_yolov3s_nine_anchors_three_per_stride():
    pool = anchor_pixels("coco_yolov3")
    assert sorted(pool) == [8, 16, 32]
    assert pool[8] == ((10, 13), (16, 30), (33, 23))
    assert pool[32][-1] == (373, 326)


def test_pixel_anchors_become_height_width_ratios_of_the_input():
    ratios = anchors_to_ratios({32: ((116, 90),), 8: ((10, 13),)}, ImageSpec(192, 640))
    # (h / image height, w / image width): 90 / 192 = 0.46875, 116 / 640 = 0.18125
    assert ratios[32] == ((0.46875, 0.18125),)
    assert ratios[8] == ((13 / 192, 10 / 640),)
    assert list(ratios) == [8, 32]


def test_explicit_anchor_table_with_string_strides_is_accepted():
    assert anchor_pixels({"16": [[30, 61]]}) == {16: ((30.0, 61.0),)}


def test_unknown_pool_names_the_known_ones():
    with pytest.raises(AnchorError, match="coco_yolov3"):
        anchor_pixels("coco_v9")


def test_non_positive_anchor_is_rejected():
    with pytest.raises(AnchorError, match="stride 8"):
        anchor_pixels({8: [[0, 13]]})


@pytest.mark.slow
def test_anchors_command_prints_per_stride_with_recall_and_writes_them_into_the_plan(tmp_path):
    import tomllib
    from helpers import run_cli, write_tiny_plan

    plan = write_tiny_plan(tmp_path, images=16)
    printed = run_cli("--plan", str(plan), "--anchors", "--cache-dir", str(tmp_path / "cache"))
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert "stride  8: current [(10, 13), (16, 30), (33, 23)]  new [" in printed.stdout
    assert "best-possible recall (IoU >= 0.5): current " in printed.stdout
    assert plan.read_text().count('anchors = "coco_yolov3"') == 1  # unchanged without --write

    written = run_cli("--plan", str(plan), "--anchors", "--write", "--cache-dir", str(tmp_path / "cache"))
    assert written.returncode == 0, written.stderr[-2000:]
    anchors = tomllib.loads(plan.read_text())["model"]["anchors"]
    assert sorted(anchors) == ["16", "32", "8"] and all(len(pairs) == 3 for pairs in anchors.values())
    assert run_cli("--plan", str(plan), "--check").returncode == 0


def test_writing_anchors_replaces_an_anchor_table_and_keeps_every_other_line(tmp_path):
    import tomllib

    from detplug.core.cli.use import _write_anchors

    plan = tmp_path / "plan.toml"
    before = (
        'name = "p"\n\n[model]\n# anchors fitted with [brackets] in a comment\nbackbone = { name = "x" }\n'
        "anchors = { 8 = [[4, 12], [7, 20]], 16 = [[16, 9]] }\nassign = { neighbours = true }\n\n"
        '[datasets.d]\nname = "kitti"\nimage_size = [96, 320]\n'
    )
    plan.write_text(before)
    _write_anchors(plan, "{ 8 = [[1, 2]], 16 = [[3, 4]] }")
    after = plan.read_text()
    assert after == before.replace("anchors = { 8 = [[4, 12], [7, 20]], 16 = [[16, 9]] }",
                                   "anchors = { 8 = [[1, 2]], 16 = [[3, 4]] }")
    assert tomllib.loads(after)["model"]["anchors"] == {"8": [[1, 2]], "16": [[3, 4]]}


# -- anchors that cannot match at the plan's image size (static, no data) ---------


def test_anchors_larger_than_the_image_are_named_per_stride():
    from detplug.core.plan.anchors import unmatched_strides

    problems = unmatched_strides(anchor_pixels("coco_yolov3"), ImageSpec(96, 320))
    assert sorted(problems) == [16, 32]
    assert problems[16] == ["anchor 59x119 px is larger than the 96x320 image"]
    assert problems[32] == ["anchors 156x198, 373x326 px are larger than the 96x320 image"]
    assert unmatched_strides(anchor_pixels("coco_yolov3"), ImageSpec(416, 416)) == {}


def test_a_stride_whose_anchors_are_never_the_best_match_gets_no_ground_truth():
    from detplug.core.plan.anchors import unmatched_strides

    # At 64x96 a 400x400 anchor has shape IoU <= 6144 / 160000 with any box that fits, and
    # 30x61 always beats it (a 96x64 box: 1830 / 6144).
    table = {8: [[10, 13]], 16: [[30, 61]], 32: [[400, 400]]}
    problems = unmatched_strides(anchor_pixels(table), ImageSpec(64, 96))
    assert list(problems) == [32]
    assert "are the best match for no object that fits a 64x96 image, so it gets no ground truth" in problems[32][0]
    # YOLOv5's rule matches any anchor within the ratio, but 400 px is 4.2x the largest box.
    assert 32 in unmatched_strides(anchor_pixels(table), ImageSpec(64, 96), anchor_ratio=4.0)
    assert 32 not in unmatched_strides({8: ((10, 13),), 16: ((30, 61),), 32: ((90, 60),)}, ImageSpec(64, 96),
                                       anchor_ratio=4.0)
