"""Built-in datasets: declarations only (attrs + detplug specs, no TensorFlow).

A dataset converts its source into TFRecord shards plus ``manifest.json``
(detplug.core.data); every dataset's records share one format, so one input
pipeline reads them all, and one converter (detplug.core.data.convert) writes
them: a format module only lists its images and reads one image's labels.
Every dataset's params inherit :class:`RecordParams`.
"""

from __future__ import annotations

from attrs import field, frozen, validators

from detplug import Chain, Component, DatasetSpec, ImageSpec, LabelSpec, SpecError, hookimpl
from detplug.core.data.kitti_format import KITTI_CLASSES
from detplug.core.plan.params import as_tuple

PLUGIN_API = 1

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


def _class_names_or_empty(instance, attribute, value) -> None:
    if value != ():
        _class_names(instance, attribute, value)


class _FrozenMap(dict):
    """A dict that hashes, so params holding one stay hashable like every frozen params class."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


def _as_map(value):
    return _FrozenMap(value) if isinstance(value, dict) else value


def _class_map(instance, attribute, value) -> None:
    if not isinstance(value, dict) or any(not isinstance(k, str) or not isinstance(v, str) for k, v in value.items()):
        raise ValueError(
            f"'{attribute.name}' must map KITTI types to class names, like {{ Van = \"Car\" }} (got {value!r})"
        )
    unknown = sorted(v for v in set(value.values()) if v not in instance.classes)
    if unknown:
        raise ValueError(
            f"'{attribute.name}' maps to {', '.join(unknown)}, which is not one of the classes "
            f"{', '.join(instance.classes)}"
        )


def _positive_int(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"'{attribute.name}' must be a whole number of pixels > 0 (got {value!r})")


def _overlap(instance, attribute, value) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"'{attribute.name}' must be >= 0 and < 1, the share of a tile its neighbour also "
                         f"covers (got {value!r})")


def _area_ratio(instance, attribute, value) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"'{attribute.name}' must be > 0 and <= 1, the share of a box's area a tile must hold "
                         f"for the box to keep its label there (got {value!r})")


@frozen(kw_only=True)
class TileParams:
    """Images larger than a tile are cut into tiles at conversion (detplug.core.data.tiles):
    ``size`` x ``size`` windows overlapping by ``overlap``, the last row and column shifted back
    to end at the image's edge; a smaller image stays whole. A box cut by a tile keeps its label
    there when at least ``min_area_ratio`` of its area is inside, else it is an ignore region."""

    size: int = field(validator=_positive_int)
    overlap: float = field(default=0.2, converter=float, validator=_overlap)
    min_area_ratio: float = field(default=0.5, converter=float, validator=_area_ratio)


def _as_tile(value):
    """A table (from TOML or plain Python) to TileParams; None or an empty table: no tiling."""
    if value is None or (isinstance(value, dict) and not value):
        return None
    return TileParams(**value) if isinstance(value, dict) else value


@frozen(kw_only=True)
class RecordParams:
    """What every dataset's records are made with."""

    #: (height, width) the images are letterboxed to; the model's input size.
    image_size: tuple[int, int] = field(default=(192, 640), converter=as_tuple, validator=_size_pair)
    classes: tuple[str, ...] = field(default=KITTI_CLASSES, converter=as_tuple, validator=_class_names)
    max_boxes: int = field(default=50, validator=validators.gt(0))
    val_ratio: float = field(default=0.2, converter=float, validator=[validators.gt(0), validators.lt(1)])
    split_seed: int = 0
    #: Images per TFRecord shard file. [train] shard_by = "file" gives each worker its own
    #: shards, so a dataset needs at least one train shard per worker.
    records_per_shard: int = field(default=256, validator=validators.gt(0))
    #: Train on tiles: { size = 320, overlap = 0.2, min_area_ratio = 0.5 } (see TileParams). The
    #: train/val split is by source image, before tiling. Absent or {}: whole images.
    tile: TileParams | None = field(default=None, converter=_as_tile,
                                    validator=validators.optional(validators.instance_of(TileParams)))


@frozen(kw_only=True)
class KittiParams(RecordParams):
    #: The KITTI folder (holding training/image_2 and training/label_2). Empty: --data-root,
    #: then $KITTI_ROOT, then (if synthetic_fallback) the synthetic sample.
    root: str = ""
    synthetic_fallback: bool = True
    #: Other KITTI types to train as one of the classes, e.g. { Van = "Car" }.
    class_map: dict[str, str] = field(factory=_FrozenMap, converter=_as_map, validator=_class_map)
    #: A folder holding train.txt and val.txt (image stems, as KITTI's ImageSets), relative
    #: to the KITTI root unless absolute. Empty: split by val_ratio and split_seed.
    split_files: str = ""
    #: How many images the synthetic sample draws when there is no KITTI: with val_ratio 0.2,
    #: 64 held-out images hold ~60 moderate objects per class, enough that KITTI's AP40 is
    #: not capped by its threshold sampling (it needs ~40 per class).
    synthetic_images: int = field(default=320, validator=validators.gt(1))


@frozen(kw_only=True)
class CocoParams(RecordParams):
    #: The COCO folder; --data-root overrides it. The paths below are relative to it unless absolute.
    root: str = ""
    #: The instances JSON of the train split, and the folder of its images.
    annotations: str = "annotations/instances_train2017.json"
    images: str = "train2017"
    #: A second instances JSON and image folder for the val split. Empty: val_ratio splits the first.
    val_annotations: str = ""
    val_images: str = ""
    #: Category names to train, in this order. Empty: every category of the JSON, in id order
    #: (read at --check time, which then needs 'root': list them to keep --check instant).
    classes: tuple[str, ...] = field(default=(), converter=as_tuple, validator=_class_names_or_empty)
    max_boxes: int = field(default=100, validator=validators.gt(0))


@frozen(kw_only=True)
class YoloTxtParams(RecordParams):
    """A folder of images with YOLO ``class cx cy w h`` label files (normalised to the image).

    Layouts: ``images/{train,val}`` + ``labels/{train,val}`` (splits given), ``images/`` +
    ``labels/`` (split by val_ratio), or images with their .txt beside them."""

    root: str = ""
    #: The names of class ids 0, 1, ...; empty: from data.yaml ('names') or classes.txt in root.
    names: tuple[str, ...] = field(default=(), converter=as_tuple, validator=_class_names_or_empty)
    #: The names to train, in this order (others are dropped). Empty: all names.
    classes: tuple[str, ...] = field(default=(), converter=as_tuple, validator=_class_names_or_empty)


def _name_map(instance, attribute, value) -> None:
    if not isinstance(value, dict) or any(not isinstance(k, str) or not isinstance(v, str) for k, v in value.items()):
        raise ValueError(
            f"'{attribute.name}' must map object names to class names, like {{ van = \"car\" }} (got {value!r})"
        )
    if instance.classes:
        unknown = sorted(v for v in set(value.values()) if v not in instance.classes)
        if unknown:
            raise ValueError(f"'{attribute.name}' maps to {', '.join(unknown)}, which is not one of the classes "
                             f"{', '.join(instance.classes)}")
    both = sorted(k for k in value if k in instance.classes)
    if both:
        raise ValueError(f"'{attribute.name}' maps {', '.join(both)}, which is also one of the classes; "
                         f"map a name or train it, not both")


@frozen(kw_only=True)
class VocParams(RecordParams):
    """Pascal VOC XML annotations: a devkit folder (``Annotations/``, ``JPEGImages/``, split
    lists in ``ImageSets/Main``) or XML files beside their images (LabelImg)."""

    root: str = ""
    #: The names to train, in this order (objects of other names are dropped). Empty: every
    #: object name of the XML files, sorted (read at --check time, which then needs 'root').
    classes: tuple[str, ...] = field(default=(), converter=as_tuple, validator=_class_names_or_empty)
    #: Other object names to train as one of the classes, e.g. { van = "car" }.
    class_map: dict[str, str] = field(factory=_FrozenMap, converter=_as_map, validator=_name_map)
    #: The folder of the split lists (train.txt, val.txt, trainval.txt, test.txt: one image
    #: stem a line), relative to the root unless absolute. Empty, or no list there: split by val_ratio.
    image_sets: str = "ImageSets/Main"


@frozen(kw_only=True)
class SyntheticParams(RecordParams):
    #: How many images to draw, at what (height, width) before letterboxing, from which seed.
    images: int = field(default=128, validator=validators.gt(1))
    source_size: tuple[int, int] = field(default=(188, 621), converter=as_tuple, validator=_size_pair)
    seed: int = 0


def dataset_spec(params, chain: Chain) -> DatasetSpec:
    """Gives image_size x 3 images in [0, 1] and up to max_boxes boxes of the listed classes."""
    height, width = params.image_size
    return DatasetSpec(ImageSpec(height, width, 3), LabelSpec(params.classes, params.max_boxes))


def _spec_with_source_classes(module: str):
    """A spec for a format whose class names may come from the source when 'classes' is empty."""

    def spec(params, chain: Chain) -> DatasetSpec:
        """Gives image_size x 3 images in [0, 1], up to max_boxes boxes of the listed classes (or the source's)."""
        classes = params.classes
        if not classes:
            import importlib

            from detplug.core.errors import DataError

            try:
                classes = importlib.import_module(module).class_names(params, data_root=None)
            except DataError as error:
                raise SpecError(
                    f"'classes' is empty, so the class names must come from the source, but {error}; "
                    f"list the classes in the plan or set the dataset's 'root'"
                ) from None
        height, width = params.image_size
        return DatasetSpec(ImageSpec(height, width, 3), LabelSpec(classes, params.max_boxes))

    return spec


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
    factory="detplug.plugins.datasets.kitti:prepare_synthetic",
)

COCO = Component(
    kind="dataset",
    name="coco",
    summary="COCO instances JSON + image folder to TFRecords; crowd boxes become ignore regions",
    params=CocoParams,
    spec=_spec_with_source_classes("detplug.plugins.datasets.coco"),
    factory="detplug.plugins.datasets.coco:prepare_coco",
)

YOLO_TXT = Component(
    kind="dataset",
    name="yolo_txt",
    summary="Images + YOLO txt labels (class cx cy w h, normalised) to TFRecords; names from data.yaml/classes.txt",
    params=YoloTxtParams,
    spec=_spec_with_source_classes("detplug.plugins.datasets.yolo_txt"),
    factory="detplug.plugins.datasets.yolo_txt:prepare_yolo_txt",
)

VOC = Component(
    kind="dataset",
    name="voc",
    summary="Pascal VOC XML (a devkit folder, or LabelImg's XML beside each image) to TFRecords; difficult "
            "objects become ignore regions",
    params=VocParams,
    spec=_spec_with_source_classes("detplug.plugins.datasets.voc"),
    factory="detplug.plugins.datasets.voc:prepare_voc",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [KITTI, SYNTHETIC, COCO, YOLO_TXT, VOC]
