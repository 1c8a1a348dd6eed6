"""``run.py kitti-eval LABEL_DIR RESULT_DIR``: KITTI result files against KITTI label files.

The ``kitti_ap`` evaluator is found through the registry, as a plan's
evaluator is, and built by :mod:`detplug.core.build`; no plan is needed and
TensorFlow is never imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from detplug.core.build import build_evaluator
from detplug.core.data.kitti_format import KITTI_CLASSES
from detplug.core.errors import DataError, first_few
from detplug.core.evaluate.contract import EvaluationResult, format_table
from detplug.core.evaluate.kitti_files import read_kitti_labels, read_kitti_results, result_folder
from detplug.registry import Registry

#: The evaluator that scores as KITTI's devkit does.
KITTI_EVALUATOR = "kitti_ap"


def run_kitti_eval(label_dir: str | Path, result_dir: str | Path, *, json_path: str | Path | None = None,
                   classes: Sequence[str] | None = None, registry: Registry | None = None,
                   missing_as_empty: bool = False) -> EvaluationResult:
    """Evaluate KITTI result files against KITTI label files as the devkit does, print
    the table and write the JSON to ``json_path`` if given.

    A label file without its result file is refused, as the devkit refuses such a
    submission, unless ``missing_as_empty`` counts the image as one without detections.
    ``classes`` defaults to the KITTI classes (Car, Pedestrian, Cyclist) that occur in the
    results, as the devkit evaluates only the classes a submission detects.
    """
    truths = read_kitti_labels(label_dir)
    detections = read_kitti_results(result_dir)
    answered = {image.image_id for image in detections}
    missing = [truth.image_id for truth in truths if truth.image_id not in answered]
    if missing and not missing_as_empty:
        shown = first_few([f"{name}.txt" for name in missing])
        raise DataError(f"{len(missing)} of the {len(truths)} label files in {label_dir} have no result file in "
                        f"{result_folder(result_dir)} ({shown}); the devkit refuses such a submission: write an "
                        f"empty result file for an image without detections, or pass --missing-as-empty")
    if classes is None:
        detected = {name.lower() for image in detections for name in image.names}
        classes = tuple(name for name in KITTI_CLASSES if name.lower() in detected)
        if not classes:
            raise DataError(f"the results in {result_folder(result_dir)} detect none of "
                            f"{', '.join(KITTI_CLASSES)}, so there is nothing to evaluate")
    component = (registry or Registry.discover()).get("evaluator", KITTI_EVALUATOR).component
    evaluator = build_evaluator(component, component.default_params(), classes=tuple(classes))
    result = evaluator.evaluate(truths, detections)
    print(format_table(result))
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(result.to_json() + "\n", encoding="utf-8")
    return result
