"""Plans are read and validated before TensorFlow is imported; every mistake names file and key."""

from pathlib import Path

import pytest
from helpers import write_tiny_plan

from detplug.core.errors import CheckError, PlanError
from detplug.core.plan.check import static_check
from detplug.core.plan.plan_file import PLANS_DIR, find_plan, load_plan, resolve_components
from detplug.registry import Registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover()


def checked(path: Path, registry: Registry, overrides=()):
    plan = load_plan(path, overrides)
    return static_check(plan, resolve_components(plan, registry))


def test_kitti_simple_is_the_original_two_period_plan():
    plan = load_plan(find_plan("kitti_simple"))
    five = [(p.dataset, p.epochs, p.learning_rate, p.losses, p.save) for p in plan.periods]
    assert five == [("kitti", 10, 1e-3, "standard", True), ("kitti", 2, 1e-4, "standard", True)]
    assert plan.periods[1].learning_rate == pytest.approx(plan.periods[0].learning_rate / 10)
    assert plan.period_bounds() == [(0, 10), (10, 12)]
    assert plan.total_epochs == 12


def test_plan_is_found_by_name_or_by_path(tmp_path):
    assert find_plan("kitti_simple") == PLANS_DIR / "kitti_simple.toml"
    path = write_tiny_plan(tmp_path)
    assert find_plan(str(path)) == path


def test_missing_plan_names_the_closest_and_known_plans():
    with pytest.raises(PlanError, match=r"no plan named 'kitti_simpel': did you mean 'kitti_simple'"):
        find_plan("kitti_simpel")
    with pytest.raises(PlanError, match="does not exist"):
        find_plan("nowhere/plan.toml")


def test_set_overrides_one_value_typed_by_the_params_class(tmp_path, registry):
    result = checked(write_tiny_plan(tmp_path), registry, ["model.backbone.width=0.25"])
    assert result.resolved["model.backbone"].params.width == 0.25
    assert result.chain.features[32].channels == 256


def test_unknown_plan_key_has_did_you_mean_and_the_valid_keys(tmp_path):
    path = write_tiny_plan(tmp_path)
    path.write_text(path.read_text().replace("batch_size = 4", "batchsize = 4"))
    with pytest.raises(PlanError) as error:
        load_plan(path)
    message = str(error.value)
    assert str(path) in message and "train.batchsize" in message
    assert "did you mean 'batch_size'" in message and "valid keys" in message


def test_unknown_param_key_names_the_key_path(tmp_path, registry):
    with pytest.raises(PlanError, match=r"model\.backbone\.widht: unknown key; did you mean 'width'\?"):
        checked(write_tiny_plan(tmp_path), registry, ["model.backbone.widht=0.5"])


def test_a_param_that_may_be_left_out_says_so_not_nonetype(tmp_path, registry):
    # coco_map's max_detections is int | None; TOML has no null, so the way to unset it is to leave it out.
    with pytest.raises(PlanError) as error:
        checked(write_tiny_plan(tmp_path), registry,
                ['evaluation.evaluator={name="coco_map", max_detections="many"}'])
    message = str(error.value)
    assert "evaluation.evaluator.max_detections: expected int (or leave the key out), found 'many'" in message
    assert "NoneType" not in message


def test_wrong_type_and_out_of_range_values_name_file_key_expected_and_found(tmp_path, registry):
    path = write_tiny_plan(tmp_path)
    with pytest.raises(PlanError, match=r"model\.backbone\.width: expected float, found 'wide'"):
        checked(path, registry, ['model.backbone.width="wide"'])
    # A value given by --set is attributed to it, not to the file that lacks it.
    with pytest.raises(PlanError, match=r"^--set model\.backbone\.width=-1 \(over .*tiny\.toml\): "
                                        r"model\.backbone\.width: 'width' must be > 0"):
        checked(path, registry, ["model.backbone.width=-1"])
    path.write_text(path.read_text().replace("width = 0.125, depth", "width = -1.0, depth"))
    with pytest.raises(PlanError, match=r"^\S*tiny\.toml: model\.backbone\.width: 'width' must be > 0"):
        checked(path, registry)
    with pytest.raises(PlanError, match=r"periods\[0\]\.epochs: must be > 0 \(got 0\)"):
        load_plan(path, ["periods=[{dataset='synth', epochs=0, learning_rate=1e-3, losses='standard', save=true}]"])


@pytest.mark.parametrize("override, key", [
    ("periods.0.learning_rate=nan", r"periods\[0\]\.learning_rate"),
    ("loss_combos.standard.ciou=inf", r"loss_combos\.standard\.ciou"),
    ("train.momentum=-inf", r"train\.momentum"),
    ("model.backbone.width=nan", r"model\.backbone\.width"),
    ("evaluation.iou_threshold=nan", r"evaluation\.iou_threshold"),
])
def test_nan_and_inf_are_refused_wherever_a_number_is_read_naming_the_key(tmp_path, registry, override, key):
    with pytest.raises(PlanError, match=rf"{key}: must be a finite number, found (nan|inf|-inf)"):
        checked(write_tiny_plan(tmp_path), registry, [override])


def test_nan_anchors_are_refused(tmp_path, registry):
    with pytest.raises(PlanError, match=r"model\.anchors: anchors for stride 8: need positive, finite"):
        checked(write_tiny_plan(tmp_path), registry, ["model.anchors={8 = [[nan, 4]]}"])


def test_unknown_loss_says_installed_losses(tmp_path, registry):
    with pytest.raises(PlanError, match=r"installed losses: "):
        checked(write_tiny_plan(tmp_path), registry, ["loss_combos.standard.cioux=1.0"])


def test_unknown_component_lists_closest_and_installed_names(tmp_path, registry):
    with pytest.raises(PlanError) as error:
        checked(write_tiny_plan(tmp_path), registry, ['model.backbone.name="darknet35"'])
    message = str(error.value)
    assert "unknown backbone 'darknet35'" in message and "did you mean 'darknet53'" in message
    assert "installed backbones: " in message and "darknet53" in message and "pip install" in message


def test_period_must_name_a_dataset_and_loss_combination_of_the_plan(tmp_path):
    path = write_tiny_plan(tmp_path)
    path.write_text(path.read_text().replace('losses = "standard"', 'losses = "fancy"', 1))
    with pytest.raises(PlanError, match=r"periods\[0\]\.losses: 'fancy' is not one of the plan's loss_combos"):
        load_plan(path)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(PlanError, match="broken.toml: not valid TOML"):
        load_plan(path)


def test_mismatched_parts_name_both_components_field_expected_and_found(tmp_path, registry):
    with pytest.raises(CheckError) as error:
        checked(write_tiny_plan(tmp_path), registry, ["datasets.synth.image_size=[64, 100]"])
    message = str(error.value)
    assert "backbone 'darknet53'" in message and "dataset 'synthetic'" in message
    assert "image size: expected multiples of 32, found 64x100" in message


def test_static_check_walks_dataset_backbone_head_decoder_losses(tmp_path, registry):
    result = checked(write_tiny_plan(tmp_path), registry)
    kinds = [link.resolved.component.kind for link in result.links]
    assert kinds[:4] == ["dataset", "backbone", "head", "decoder"]
    assert kinds.count("loss") == 3
    assert result.chain.head[8].channels_per_anchor == 5 + 3


def test_eval_every_auto_keeps_evaluation_under_a_tenth_of_training_by_image_counts():
    from detplug.core.plan.settings import evaluation_every

    # One evaluation of E images costs about 2 E training images' worth.
    assert evaluation_every("auto", train_images=1000, evaluated_images=40)[0] == 1  # 8%
    assert evaluation_every("auto", train_images=1000, evaluated_images=50)[0] == 1  # exactly 10%
    assert evaluation_every("auto", train_images=160, evaluated_images=40)[0] == 5  # 50%: every 5 epochs, 10%
    assert evaluation_every("auto", train_images=300, evaluated_images=100)[0] == 7  # 67%: every 7, 9.5%
    assert evaluation_every(0, train_images=160, evaluated_images=40) == (0, "set by [evaluation] eval_every")
    assert evaluation_every(3, train_images=160, evaluated_images=40)[0] == 3


@pytest.mark.parametrize("value", ['"often"', "-1", "true"])
def test_eval_every_is_a_whole_number_or_auto(tmp_path, registry, value):
    with pytest.raises(PlanError, match=r"evaluation\.eval_every: .*"):
        checked(write_tiny_plan(tmp_path), registry, [f"evaluation.eval_every={value}"])
    assert checked(write_tiny_plan(tmp_path), registry, ['evaluation.eval_every="auto"']).plan.evaluation.eval_every \
        == "auto"


def test_steps_per_execution_auto_is_eight_on_an_accelerator_and_one_on_a_cpu(tmp_path, registry):
    from detplug.core.plan.settings import steps_per_call

    assert steps_per_call("auto", on_accelerator=True) == 8
    assert steps_per_call("auto", on_accelerator=False) == 1
    assert steps_per_call(3, on_accelerator=True) == steps_per_call(3, on_accelerator=False) == 3
    assert checked(write_tiny_plan(tmp_path), registry).plan.train.run.steps_per_execution == "auto"
    for value in ("0", '"fast"'):
        with pytest.raises(PlanError, match=r"steps_per_execution' must be a whole number >= 1 or \"auto\""):
            checked(write_tiny_plan(tmp_path), registry, [f"train.steps_per_execution={value}"])
    with pytest.raises(PlanError, match=r"train.steps_per_execution: expected int or str, found True"):
        checked(write_tiny_plan(tmp_path), registry, ["train.steps_per_execution=true"])


def test_rot90_is_refused_for_a_non_square_input_in_one_sentence(tmp_path, registry):
    path = write_tiny_plan(tmp_path)
    with pytest.raises(CheckError, match=r"train\.augment\.rot90: a turn by 90 degrees needs a square input, but "
                                         r"dataset 'synth' trains at 64x96; set rot90 = 0"):
        checked(path, registry, ["train.augment={ rot90 = 0.5 }"])
    square = checked(path, registry, ["train.augment={ rot90 = 0.5, flipud = 0.5 }", "datasets.synth.image_size=[64, 64]"])
    assert square.plan.train.augmentation.rot90 == 0.5 and square.plan.train.augmentation.flipud == 0.5
