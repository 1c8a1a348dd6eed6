"""Built-in datasets: declarations only (attrs + detplug specs, no TensorFlow).

A dataset converts its source into TFRecord shards plus ``manifest.json``
(detplug.core.data); every dataset's records share one format, so one input
pipeline reads them all.
"""

from __future__ import annotations

from attrs import field, frozen, validators

from detplug import Chain, Component, DatasetSpec, ImageSpec, LabelSpec, hookimpl

PLUGIN_API = 1

KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")


def _as_tuple(value):
    # Only lists become tuples: tuple("Car") would silently be three classes C, a, r,
    # and tuple(192) a TypeError; anything else is left for the validator to name.
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _size_pair(instance, attribute, value) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value)
    ):
        shown = list(value) if isinstance(value, tuple) else value
        raise ValueError(f"'{attribute.name}' must be [height, width], two positive integers (got {shown!r})")


def _class_names(instance, attribute, value) -> None:
    if (
        not isinstance(value, tuple)
        or not value
        or any(not isinstance(name, str) or not name for name in value)
        or len(set(value)) != len(value)
    ):
        shown = list(value) if isinstance(value, tuple) else value
        raise ValueError(f"'{attribute.name}' must be a non-empty list of distinct class names (got {shown!r})")


@frozen(kw_only=True)
class RecordParams:
    """What every dataset's records are made with."""

    #: (height, width) the images are letterboxed to; the model's input size.
    image_size: tuple[int, int] = field(default=(192, 640), converter=_as_tuple, validator=_size_pair)
    classes: tuple[str, ...] = field(default=KITTI_CLASSES, converter=_as_tuple, validator=_class_names)
    max_boxes: int = field(default=50, validator=validators.gt(0))
    val_ratio: float = field(default=0.2, converter=float, validator=[validators.gt(0), validators.lt(1)])
    split_seed: int = 0


@frozen(kw_only=True)
class KittiParams(RecordParams):
    #: The KITTI folder (holding training/image_2 and training/label_2). Empty: --data-root,
    #: then $KITTI_ROOT, then (if synthetic_fallback) the synthetic sample.
    root: str = ""
    synthetic_fallback: bool = True


@frozen(kw_only=True)
class SyntheticParams(RecordParams):
    #: How many images to draw, at what (height, width) before letterboxing, from which seed.
    images: int = field(default=128, validator=validators.gt(1))
    source_size: tuple[int, int] = field(default=(188, 621), converter=_as_tuple, validator=_size_pair)
    seed: int = 0


def dataset_spec(params, chain: Chain) -> DatasetSpec:
    height, width = params.image_size
    return DatasetSpec(ImageSpec(height, width, 3), LabelSpec(params.classes, params.max_boxes))


KITTI = Component(
    kind="dataset",
    name="kitti",
    summary="KITTI 2D object detection (training/image_2 + label_2) to TFRecords; synthetic sample when absent",
    params=KittiParams,
    spec=dataset_spec,
    factory="detplug.plugins.datasets.kitti:prepare_kitti",
)

SYNTHETIC = Component(
    kind="dataset",
    name="synthetic",
    summary="Generated KITTI-format sample: Car/Pedestrian/Cyclist shapes on noise, with DontCare boxes",
    params=SyntheticParams,
    spec=dataset_spec,
    factory="detplug.plugins.datasets.synthetic:prepare_synthetic",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [KITTI, SYNTHETIC]
