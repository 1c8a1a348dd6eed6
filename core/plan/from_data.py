"""A plan for a data folder: ``run.py train --data PATH [--model NAME]``.

A template (``plans/templates/NAME.toml``: the model, the loss combination, ``[train]`` and
the periods) gets the dataset core/data/layouts.py recognises at PATH as its ``data``
dataset, with:

- the evaluator of the format (``coco_map``; ``kitti_ap`` for KITTI);
- the input size: the template's long side, and the other side from the data's median
  aspect (:func:`data_image_size`), so wide images (KITTI's 3.3 : 1) are not letterboxed
  into a square that is two thirds padding;
- anchors: COCO's (YOLOv3's nine, fitted at 416x416) scaled by the input's long side, unless
  the template names its own; ``run.py anchors --plan P --write`` fits them to the data;
- the objectness and class gains scaled as YOLOv5 scales its own (the template gives them
  for 640x640 and 80 classes): objectness x H x W / 640^2, class x classes / 80;
- ``--epochs``, ``--image-size`` and ``--batch`` over the template's;
- ``--tile SIZE [--overlap R]``: the dataset's ``tile`` param (images larger than SIZE cut
  into SIZE x SIZE tiles at conversion), and a SIZE x SIZE input unless ``--image-size``
  says otherwise. Without ``--tile``, one line says when the median image is at least
  twice the input's long side, and which ``--tile`` fits.

The result is an ordinary plan file, written as ``runs/<name>/plan.toml``: training,
resuming and the static check treat it as any plan, and ``--plan`` runs it again.
No TensorFlow.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import attrs
import tomllib

from detplug.core.errors import PlanError
from detplug.core.plan.anchors import ANCHOR_POOLS

TEMPLATES = Path(__file__).resolve().parents[2] / "plans" / "templates"
DATASET_KEY = "data"
#: The input size and class count the templates' loss gains are given for (YOLOv5's).
GAIN_SIZE, GAIN_CLASSES = 640, 80
ANCHOR_POOL, ANCHOR_POOL_SIZE = "coco_yolov3", 416
EVALUATORS = {"kitti": "kitti_ap"}
PLAN_FILE = "plan.toml"


@attrs.frozen
class DataLayout:
    """A dataset found at a path: the dataset component, its params, and its classes.

    core/data/layouts.py finds it; it is declared here, where the plan is written from it,
    because the plan layer imports nothing of the data layer."""

    component: str
    params: dict[str, Any]
    classes: tuple[str, ...]
    description: str
    #: The folder its images are in (searched with its subfolders), for their typical shape.
    images: Path | None = None


def template_names() -> list[str]:
    """The shipped templates: ``--model`` takes one of these names."""
    return sorted(path.stem for path in TEMPLATES.glob("*.toml"))


def read_template(name: str) -> dict[str, Any]:
    path = TEMPLATES / f"{name}.toml"
    if not path.is_file():
        raise PlanError(f"--model {name}: no such template; the templates are {', '.join(template_names())} "
                        f"(run.py list plans)")
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def image_size_of(values: list[int] | None) -> tuple[int, int] | None:
    """``--image-size S`` (square) or ``--image-size H W``."""
    if not values:
        return None
    if len(values) not in (1, 2) or any(value <= 0 for value in values):
        raise PlanError(f"--image-size {' '.join(map(str, values))}: give one size (square) or height and width, "
                        f"in pixels, multiples of 32")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def data_image_size(model: str, aspect: tuple[float, int] | None) -> tuple[tuple[int, int], str]:
    """The input (height, width) for data of median ``aspect`` (width / height, images read)
    and template ``model``: the template's long side, the other side the nearest multiple of
    32 (at least 32) that keeps the aspect; the template's size when the aspect is unknown.
    With why, in words."""
    height, width = (int(v) for v in read_template(model).get("datasets", {}).get(DATASET_KEY, {}).get(
        "image_size", (416, 416)))
    if aspect is None:
        return (height, width), f"template '{model}''s (no image to measure the data's shape)"
    ratio, images = aspect
    long = max(height, width)
    short = max(32, round(long / max(ratio, 1 / ratio) / 32) * 32)
    size = (short, long) if ratio >= 1 else (long, short)
    return size, (f"template '{model}''s long side {long}, the other side from the data's median aspect "
                  f"{ratio:.2f} (width / height, {images} images); --image-size H W sets it")


#: The median image's long side, over the input's, from which training on tiles is suggested.
TILE_HINT_RATIO = 2.0


def tile_table(size: int | None, overlap: float | None) -> dict[str, Any] | None:
    """The dataset's ``tile`` table for ``--tile SIZE [--overlap R]``; None without --tile."""
    if size is None:
        if overlap is not None:
            raise PlanError(f"--overlap {overlap:g} goes with --tile SIZE (the tiles' side in pixels); give both, "
                            f"or neither")
        return None
    if size < 1:
        raise PlanError(f"--tile {size}: give the tiles' side in pixels, a whole number >= 1 (e.g. --tile 320)")
    table: dict[str, Any] = {"size": size}
    if overlap is not None:
        if not 0.0 <= overlap < 1.0:
            raise PlanError(f"--overlap {overlap:g}: give the share of a tile its neighbour also covers, >= 0 and "
                            f"< 1 (e.g. 0.2)")
        table["overlap"] = overlap
    return table


def tile_image_size(size: int) -> tuple[tuple[int, int], str]:
    """The square input for tiles of ``size``: the nearest multiple of 32 (at least 32), so a
    tile is trained at (about) its own resolution. With why, in words."""
    side = max(32, round(size / 32) * 32)
    return (side, side), f"--tile {size}'s square, the nearest multiple of 32; --image-size H W sets it"


def tile_hint(image_size: tuple[int, int], long_side: tuple[float, int] | None) -> str | None:
    """One line when the data's median image (``long_side``: its long side and how many images
    were read) is at least TILE_HINT_RATIO times the input's long side, naming the ``--tile``
    that trains on tiles of the input's size; None otherwise."""
    if long_side is None:
        return None
    median, images = long_side
    input_long = max(image_size)
    if median < TILE_HINT_RATIO * input_long:
        return None
    return (f"the median image's long side is {median:g} px ({images} images read), {median / input_long:.1f}x the "
            f"input's {input_long}: letterboxing shrinks objects that much; --tile {input_long} trains on "
            f"{input_long}x{input_long} tiles at full resolution")


def plan_name(data: Path, model: str) -> str:
    """``shapes_small`` for --data .../shapes (or .../shapes/data.yaml) and --model small."""
    data = Path(data).expanduser().absolute()
    stem = data.parent.name if data.name in ("data.yaml", "dataset.yaml") else data.stem
    return f"{re.sub(r'[^A-Za-z0-9_]+', '_', stem).strip('_') or 'data'}_{model}"


def data_plan(layout: DataLayout, *, model: str, name: str, epochs: int | None = None,
              image_size: tuple[int, int] | None = None, batch: int | None = None,
              tile: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plan document for ``layout`` from template ``model`` (see the module docstring);
    ``tile``: the dataset's tile table (:func:`tile_table`)."""
    plan = copy.deepcopy(read_template(model))
    plan["name"] = name
    template_data = plan.get("datasets", {}).get(DATASET_KEY, {})
    height, width = image_size or tuple(template_data.get("image_size", (416, 416)))
    plan["datasets"] = {DATASET_KEY: {"name": layout.component, **layout.params,
                                      "image_size": [int(height), int(width)]}}
    if layout.classes:
        plan["datasets"][DATASET_KEY].setdefault("classes", list(layout.classes))
    if tile:
        plan["datasets"][DATASET_KEY]["tile"] = dict(tile)
    plan.setdefault("evaluation", {}).setdefault("evaluator", EVALUATORS.get(layout.component, "coco_map"))
    model_table = plan.setdefault("model", {})
    if model_table.get("anchors", ANCHOR_POOL) == ANCHOR_POOL:
        # Letterboxing keeps the images' shape, so objects scale with the input's long side.
        scale = max(height, width) / ANCHOR_POOL_SIZE
        model_table["anchors"] = {
            str(stride): [[max(1, round(w * scale)), max(1, round(h * scale))] for w, h in pairs]
            for stride, pairs in ANCHOR_POOLS[ANCHOR_POOL].items()}
    classes = len(layout.classes) or GAIN_CLASSES
    for combination in plan.get("loss_combos", {}).values():
        _scale_gain(combination, "objectness", height * width / GAIN_SIZE**2)
        _scale_gain(combination, "category", classes / GAIN_CLASSES)
    if batch is not None:
        plan.setdefault("train", {})["batch_size"] = batch
    if epochs is not None:
        if len(plan["periods"]) != 1:
            raise PlanError(f"--epochs: template '{model}' has {len(plan['periods'])} periods; edit the written "
                            f"plan.toml instead")
        plan["periods"][0]["epochs"] = epochs
    return plan


def _scale_gain(combination: dict[str, Any], loss: str, factor: float) -> None:
    value = combination.get(loss)
    if isinstance(value, dict) and "weight" in value:
        value["weight"] = round(float(value["weight"]) * factor, 4)
    elif isinstance(value, (int, float)):
        combination[loss] = round(float(value) * factor, 4)


def write_data_plan(plan: dict[str, Any], folder: Path, *, command: str) -> Path:
    """``folder/plan.toml`` holding ``plan``; a PlanError when a different one is already there
    (a run of other settings, or one edited by hand), which it never overwrites."""
    import tomli_w

    path = folder / PLAN_FILE
    text = (f"# Written by: {command}\n"
            f"# An ordinary plan: edit it and run it again with `run.py train --plan {path}`\n\n" + tomli_w.dumps(plan))
    if path.is_file():
        with open(path, "rb") as handle:
            existing = tomllib.load(handle)
        if existing != tomllib.loads(text):
            raise PlanError(f"{path} exists and differs from the plan this --data command gives (another template, "
                            f"--epochs, --image-size, --batch or --tile, or edited by hand); train it with "
                            f"`run.py train --plan {path}`, or give --workdir for a new run")
        return path
    from detplug.core.disk import write_atomically, writing

    with writing(PLAN_FILE, folder):
        folder.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text)
    return path
