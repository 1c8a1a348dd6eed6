"""`run.py --plan P --check`: the spec chain, then the symbolic Keras model, before any data."""

from __future__ import annotations

import pytest
from helpers import run_cli, write_tiny_plan

from detplug.core.plan.plan_file import PLANS_DIR

SHIPPED_PLANS = sorted(path.stem for path in PLANS_DIR.glob("*.toml"))


@pytest.mark.parametrize("plan", SHIPPED_PLANS)
def test_check_passes_on_every_shipped_plan_and_reads_no_data(plan, tmp_path):
    # A plan that starts from downloaded weights is checked from scratch here (nothing downloads).
    from_scratch = ["--set", "model.init_from=''"] if "init_from" in (PLANS_DIR / f"{plan}.toml").read_text() else []
    result = run_cli("--plan", plan, "--check", "--cache-dir", str(tmp_path / "cache"), *from_scratch, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for kind in ("dataset", "backbone", "head", "decoder", "loss"):
        assert f"\n  {kind} " in out
    assert "every declared spec matches the built tensor shapes" in out
    parameters = [line for line in out.splitlines() if line.startswith("parameters: ")]
    assert len(parameters) == 1 and int(parameters[0].split()[1]) > 0
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def test_kitti_simple_check_prints_the_shape_at_each_link():
    out = run_cli("--plan", "kitti_simple", "--check").stdout
    assert "image 96x320x3, 3 classes" in out
    assert "/8x64  /16x128  /32x256" in out  # darknet53 at width 0.25
    assert "/8x3x8  /16x3x8  /32x3x8" in out  # 3 anchors x (5 + 3 classes)


def test_mismatched_plan_exits_non_zero_naming_both_components(tmp_path):
    plan = write_tiny_plan(tmp_path)
    plan.write_text(plan.read_text().replace('anchors = "coco_yolov3"', "anchors = { 16 = [[30, 61]], 32 = [[116, 90]] }"))
    result = run_cli("--plan", str(plan), "--check")
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and str(plan) in message
    assert "head 'yolov3_fpn'" in message and "anchors" in message
    assert "expected (8, 16, 32), found (16, 32)" in message


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--plan", "no_such_plan"], "no plan named 'no_such_plan'"),
        (["--plan", "kitti_simple", "--set", 'model.backbone.name="darknet35"'], "did you mean 'darknet53'"),
        (["--plan", "kitti_simple", "--set", "model.backbone.depht=1"], "model.backbone.depht: unknown key"),
    ],
)
def test_bad_input_is_one_sentence_before_tensorflow(arguments, expected):
    result = run_cli(*arguments)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_check_warns_naming_the_stride_and_anchors_that_cannot_match(tmp_path):
    plan = write_tiny_plan(tmp_path)
    plan.write_text(plan.read_text().replace(
        'anchors = "coco_yolov3"', "anchors = { 8 = [[10, 13]], 16 = [[30, 61]], 32 = [[400, 400]] }"))
    result = run_cli("--plan", str(plan), "--check")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "stride 32" in warnings[0] and "400x400" in warnings[0]
    assert "gets no ground truth" in warnings[0] and f"`run.py anchors --plan {plan} --write`" in warnings[0]


def test_neighbour_assignment_needs_a_decoder_that_reaches_the_neighbours(tmp_path):
    plan = write_tiny_plan(tmp_path)
    result = run_cli("--plan", str(plan), "--check", "--set", "model.assign.neighbours=true")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "model.assign" in lines[0] and "decoder 'yolo'" in lines[0], result.stderr
    assert 'scale_xy = 2.0' in lines[0]
    fixed = run_cli("--plan", str(plan), "--check", "--set", "model.assign.neighbours=true",
                    "--set", 'model.decoder={ name = "yolov4", scale_xy = 2.0 }')
    assert fixed.returncode == 0, fixed.stderr[-3000:]


def test_kitti_from_coco_names_the_weights_file_it_needs(tmp_path):
    result = run_cli("check", "--plan", "kitti_from_coco", "--static", cwd=tmp_path)
    assert result.returncode == 2
    assert "model.init_from: weights/yolov3.weights does not exist" in result.stderr
