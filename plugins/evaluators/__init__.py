"""Built-in evaluators: declarations only (attrs + detplug specs; no numpy, no TensorFlow).

An evaluator compares detections with ground truth, both in original-image
pixels with class names as the label files spell them
(:mod:`detplug.core.evaluate.contract`). Its factory is
``factory(params, *, classes) -> Evaluator``; ``classes`` are the names the
model detects (the dataset's classes).
"""

from __future__ import annotations

from attrs import field, frozen, validators

from detplug import Chain, Component, SpecError, hookimpl
from detplug.core.data.kitti_format import KITTI_CLASSES
from detplug.core.plan.params import as_tuple

PLUGIN_API = 1

def kitti_classes_of(classes: tuple[str, ...]) -> tuple[str, ...]:
    """The names among ``classes`` that KITTI evaluates, compared case-insensitively as
    the devkit compares them (strcasecmp), spelled as ``classes`` spells them."""
    known = {name.lower() for name in KITTI_CLASSES}
    return tuple(name for name in classes if name.lower() in known)


def _iou(instance, attribute, value) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"'{attribute.name}' must be in (0, 1] (got {value!r})")


def _names(instance, attribute, value) -> None:
    if not isinstance(value, tuple) or any(not isinstance(name, str) or not name for name in value):
        raise ValueError(f"'{attribute.name}' must be a list of class names (got {value!r})")


@frozen(kw_only=True)
class KittiAPParams:
    """The IoU a detection needs to count for each class; the defaults are the benchmark's
    (devkit MIN_OVERLAP for 2D boxes). The same value decides when a detection lies
    in a DontCare region."""

    car_iou: float = field(default=0.7, converter=float, validator=_iou)
    pedestrian_iou: float = field(default=0.5, converter=float, validator=_iou)
    cyclist_iou: float = field(default=0.5, converter=float, validator=_iou)


@frozen(kw_only=True)
class CocoMapParams:
    """``ignore_names``: label names that become crowd regions (iscrowd=1) of every class:
    a detection inside one is neither right nor wrong. ``max_detections``: per image and
    class, the highest-scoring ones are kept (COCO's maxDets); unset, every detection the
    prediction kept counts: ``[evaluation] max_detections`` per image, as COCO's 100 by
    default, and per tile for a whole image scored through sliced prediction, whose hundreds
    of small objects a cap of 100 would hide."""

    ignore_names: tuple[str, ...] = field(default=("DontCare",), converter=as_tuple, validator=_names)
    max_detections: int | None = field(
        default=None, validator=validators.optional([validators.instance_of(int), validators.gt(0)]))


def _kitti_spec(params: KittiAPParams, chain: Chain) -> tuple[str, ...] | None:
    """The dataset's classes that KITTI evaluates (Car, Pedestrian, Cyclist); at least one."""
    if chain.labels is None:
        return None
    evaluated = kitti_classes_of(chain.labels.classes)
    if not evaluated:
        raise SpecError(
            f"evaluator 'kitti_ap' evaluates {', '.join(KITTI_CLASSES)}, but the dataset's classes are "
            f"{', '.join(chain.labels.classes)}; use evaluator 'coco_map' for other classes",
            field="classes", expected=f"one of {', '.join(KITTI_CLASSES)}", found=chain.labels.classes,
            upstream="dataset",
        )
    return evaluated


def _coco_spec(params: CocoMapParams, chain: Chain) -> tuple[str, ...] | None:
    """The dataset's classes, each evaluated."""
    return None if chain.labels is None else tuple(chain.labels.classes)


KITTI_AP = Component(
    kind="evaluator",
    name="kitti_ap",
    summary="KITTI 2D benchmark AP (AP40 and AP11) for Car, Pedestrian, Cyclist at easy/moderate/hard, "
            "as the devkit computes it",
    params=KittiAPParams,
    spec=_kitti_spec,
    factory="detplug.plugins.evaluators.kitti_ap:kitti_ap_evaluator",
)

COCO_MAP = Component(
    kind="evaluator",
    name="coco_map",
    summary="COCO mAP@[.5:.95], AP50, AP75 and per-class AP, computed by pycocotools",
    params=CocoMapParams,
    spec=_coco_spec,
    factory="detplug.plugins.evaluators.coco_map:coco_map_evaluator",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [KITTI_AP, COCO_MAP]
