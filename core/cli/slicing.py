"""``predict --tile SIZE [--overlap R] [--full-image-pass]`` (declared in core/cli/parser.py): the
slicing they ask for, with the plan's dataset ``tile`` as the default (no TensorFlow)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from detplug.core.data.slicing import DEFAULT_OVERLAP, Slicing, dataset_slicing
from detplug.core.errors import PlanError

if TYPE_CHECKING:
    from detplug.core.plan.check import CheckedPlan


def slicing_options(args: argparse.Namespace) -> dict[str, Any]:
    """The slicing options of ``args`` as :func:`prediction_slicing` takes them (unset where a
    namespace has none)."""
    return {"tile": getattr(args, "tile", None), "overlap": getattr(args, "overlap", None),
            "full_image_pass": getattr(args, "full_image_pass", False)}


def prediction_slicing(view: CheckedPlan, *, tile: int | None, overlap: float | None,
                       full_image_pass: bool) -> Slicing | None:
    """How ``predict`` cuts each image: ``--tile``/``--overlap`` where given, else the tiling of
    the dataset the model was trained on; None (whole images) without either, or with
    ``--tile 0``. An option that cannot apply is one sentence naming it."""
    key = view.model_dataset
    planned = dataset_slicing(view.resolved[f"datasets.{key}"].params)
    size = tile if tile is not None else (planned.size if planned is not None else 0)
    if not size:
        given = [flag for flag, value in (("--overlap", overlap), ("--full-image-pass", full_image_pass)) if value]
        if given:
            why = "--tile 0 predicts whole images" if tile == 0 else f"dataset '{key}' of the plan is not tiled"
            raise PlanError(f"{' and '.join(given)} go{'es' if len(given) == 1 else ''} with --tile SIZE ({why}); "
                            f"give --tile SIZE, or leave {' and '.join(given)} out")
        return None
    if overlap is None:
        overlap = planned.overlap if planned is not None else DEFAULT_OVERLAP
    try:
        return Slicing(size, overlap, full_image_pass=full_image_pass)
    except ValueError as error:
        raise PlanError(f"--tile {size} --overlap {overlap:g}: {error}; give a tile of 1 px or more and an overlap "
                        f"from 0 up to (not including) 1") from None
