"""KITTI's 2D object benchmark, computed as its devkit (cpp/evaluate_object.cpp) does.

For each class (Car, Pedestrian, Cyclist) and difficulty:

* ``cleanData``: a ground truth of the class counts (recall denominator) unless it
  is too occluded, too truncated or too small for the difficulty; then, like a
  neighbouring class (Van for Car, Person_sitting for Pedestrian), it is
  *ignored*: a detection matched to it is neither a hit nor a false positive,
  and missing it is no miss. A detection lower than the difficulty's minimum
  height is ignored too -- whatever its class, so a small detection of another
  class can also take an ignored match (the devkit checks the height first).
* ``computeStatistics``: ground truths are visited in file order and each takes
  one unassigned detection with IoU strictly above the class's minimum overlap:
  the highest-scoring one while collecting the scores of true positives, the
  best-overlapping valid one (an ignored one only if no valid one overlaps)
  while counting TP/FP at a score threshold. Unassigned detections of the class
  are false positives unless ``boxoverlap(det, dontcare, 0)`` -- the
  intersection over the *detection's* area -- exceeds the same minimum overlap
  for some DontCare region.
* ``getThresholds``: from the true positives' scores, one threshold per 1/40 of
  recall (41 at most).
* ``eval_class``: precision at threshold i is stored at recall point i and made
  monotone (max to the right); AP40 = mean of points 1..40, AP11 = mean of
  points 0, 4, ..., 40. Because point i is the i-th *threshold*, a class with
  few ground truths gets fewer than 41 points and a low AP even when perfect
  (one box found out of one: AP11 = 1/11, AP40 = 0) -- the devkit's own result.

Each class's precision-recall curve (``EvaluationResult.curves``) is those 41
points at the headline difficulty (moderate), against recall i/40 -- the
nominal recall the devkit's own plots (saveAndPlotPlots) put point i at -- so
its AP40 is the mean of points 1..40 of exactly the plotted precision.

Two deliberate differences, both where the devkit's figure is undefined: a
class with no ground truth at a difficulty gets NaN (the devkit prints 0), and
precision at a threshold with neither TP nor FP is 0 (the devkit divides 0 by
0). (The devkit truncates a detection's height to an integer before comparing it
with the integer minimum, which is the same test as comparing the float.)
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import cast

import attrs
import numpy as np

from detplug.core.errors import DataError
from detplug.core.evaluate.contract import (
    Cell,
    EvaluationResult,
    ImageDetections,
    ImageTruth,
    PrecisionRecall,
    pair_by_image,
)
from detplug.core.plan.specs import SpecError, name_tuple
from detplug.plugins.evaluators import KITTI_CLASSES, KittiAPParams, kitti_classes_of

DIFFICULTIES = ("easy", "moderate", "hard")
#: Below this many moderate objects of a class, the devkit's 40 recall points cannot all be
#: sampled (one score threshold per object at most): its AP is capped, and a note says so.
FEW_OBJECTS = 40
MIN_HEIGHT = (40.0, 25.0, 25.0)  # pixels, ground truth and detections
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.30, 0.50)
#: The ground-truth class that is neither hit nor miss for the evaluated class.
NEIGHBOUR = {"car": "van", "pedestrian": "person_sitting"}
DONT_CARE = "dontcare"
N_SAMPLE_PTS = 41
#: The difficulty of the headline figure (mAP_moderate_AP40) and of the PR curves.
HEADLINE_DIFFICULTY = "moderate"
#: The devkit's recall point i is nominally recall i/40 (its plots put it there).
RECALL_POINTS = np.linspace(0.0, 1.0, N_SAMPLE_PTS)


# -- boxes -------------------------------------------------------------------


def box_overlap(a: np.ndarray, b: np.ndarray, *, over_first_area: bool = False) -> np.ndarray:
    """(A, B) overlaps of x1y1x2y2 boxes: IoU, or the intersection over ``a``'s area
    (devkit boxoverlap criterion -1 / 0). 0 where the boxes do not intersect."""
    a, b = a.reshape(-1, 1, 4), b.reshape(1, -1, 4)
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.where((width > 0) & (height > 0), width * height, 0.0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    denominator = area_a if over_first_area else area_a + area_b - inter
    return np.divide(inter, denominator, out=np.zeros_like(inter), where=inter > 0)


# -- one image, one class, one difficulty ------------------------------------


@attrs.frozen
class _Frame:
    """One image as cleanData leaves it, holding only what computeStatistics reads.

    ``gt_ignored[i]``: 0 counts, 1 ignored (ground truths of other classes are left
    out: the devkit skips them). ``det_ignored[j]``: 0 of the class, 1 too small (any
    class), -1 of another class.
    ``candidates[i]``: (detection, IoU) above the minimum overlap, in detection order.
    """

    gt_ignored: tuple[int, ...]
    det_ignored: tuple[int, ...]
    scores: tuple[float, ...]
    candidates: tuple[tuple[tuple[int, float], ...], ...]
    may_be_fp: tuple[bool, ...]  # of the class, high enough, outside every DontCare region
    fp_scores: tuple[float, ...]  # sorted scores of those
    sorted_scores: tuple[float, ...]


def _statistics(frame: _Frame, compute_fp: bool, threshold: float = 0.0) -> tuple[int, int, int, list[float]]:
    """(tp, fp, fn, scores of the true positives): the devkit's computeStatistics."""
    assigned: set[int] = set()
    tp = fn = 0
    tp_scores = []
    for gt_index, gt_ignored in enumerate(frame.gt_ignored):
        chosen, found, best_overlap, took_ignored = -1, False, 0.0, False
        best_score = -np.inf
        for det, overlap in frame.candidates[gt_index]:
            if det in assigned or (compute_fp and frame.scores[det] < threshold):
                continue
            if not compute_fp:
                if frame.scores[det] > best_score:
                    chosen, found, best_score = det, True, frame.scores[det]
            elif (overlap > best_overlap or took_ignored) and frame.det_ignored[det] == 0:
                chosen, found, best_overlap, took_ignored = det, True, overlap, False
            elif not found and frame.det_ignored[det] == 1:
                chosen, found, took_ignored = det, True, True
        if not found:
            fn += gt_ignored == 0
            continue
        assigned.add(chosen)
        if gt_ignored == 0 and frame.det_ignored[chosen] == 0:
            tp += 1
            tp_scores.append(frame.scores[chosen])
    fp = 0
    if compute_fp:
        # False positives: detections of the class above the threshold, neither assigned to a
        # ground truth (every assigned one is above it) nor inside a DontCare region.
        above = len(frame.fp_scores) - bisect.bisect_left(frame.fp_scores, threshold)
        fp = above - sum(1 for det in assigned if frame.may_be_fp[det])
    return tp, fp, fn, tp_scores


def get_thresholds(scores: Sequence[float], n_groundtruth: int) -> list[float]:
    """The devkit's getThresholds: walking the true positives' scores from the highest,
    keep a score when its recall is the closer approximation of the next 1/40 step."""
    ordered = sorted(scores, reverse=True)
    thresholds, current_recall = [], 0.0
    for i, score in enumerate(ordered):
        left_recall = (i + 1) / n_groundtruth
        last = i == len(ordered) - 1
        right_recall = left_recall if last else (i + 2) / n_groundtruth
        if not last and (right_recall - current_recall) < (current_recall - left_recall):
            continue
        thresholds.append(score)
        current_recall += 1.0 / (N_SAMPLE_PTS - 1.0)
    return thresholds


# -- the evaluator -----------------------------------------------------------


@attrs.frozen
class _Class:
    name: str  # as the evaluator's classes spell it
    key: str  # lower case, as compared
    min_overlap: float


@attrs.frozen
class KittiAPEvaluator:
    """KITTI AP for the given classes (any of Car, Pedestrian, Cyclist, any case)."""

    classes: tuple[str, ...] = attrs.field(converter=name_tuple)
    params: KittiAPParams = attrs.field(factory=KittiAPParams)

    def __attrs_post_init__(self) -> None:
        unknown = [name for name in self.classes if name not in kitti_classes_of((name,))]
        if unknown or not self.classes:
            raise SpecError(f"kitti_ap evaluates {', '.join(KITTI_CLASSES)} only "
                            f"(got {', '.join(self.classes) or 'none'})",
                            field="classes", expected=KITTI_CLASSES, found=self.classes)

    def _evaluated(self) -> list[_Class]:
        overlap = {"car": self.params.car_iou, "pedestrian": self.params.pedestrian_iou,
                   "cyclist": self.params.cyclist_iou}
        return [_Class(name, name.lower(), overlap[name.lower()]) for name in self.classes]

    def evaluate(self, truths: Sequence[ImageTruth], detections: Sequence[ImageDetections]) -> EvaluationResult:
        pairs = pair_by_image(truths, detections)
        if not pairs:
            raise DataError("kitti_ap was given no images to evaluate")
        metrics: dict[str, float] = {}
        rows: list[tuple[Cell, ...]] = []
        curves: dict[str, PrecisionRecall] = {}
        for cls in self._evaluated():
            images = [_ClassImage.of(cls, truth, found) for truth, found in pairs]
            ap40: list[float] = []
            ap11: list[float] = []
            counts: list[int] = []
            for difficulty, difficulty_name in enumerate(DIFFICULTIES):
                frames = [image.frame(difficulty) for image in images]
                n_gt = sum(frame.gt_ignored.count(0) for frame in frames)
                precision = _precision(frames, n_gt)
                counts.append(n_gt)
                # Devkit: AP40 sums recall points 1..40 (not 0), AP11 points 0, 4, ..., 40.
                ap40.append(float(np.sum(precision[1:]) / 40) if n_gt else float("nan"))
                ap11.append(float(np.sum(precision[::4]) / 11) if n_gt else float("nan"))
                metrics[f"{cls.name}/{difficulty_name}/AP40"] = ap40[-1]
                metrics[f"{cls.name}/{difficulty_name}/AP11"] = ap11[-1]
                if difficulty_name == HEADLINE_DIFFICULTY:
                    curves[cls.name] = _curve(cls, precision, ap40[-1])
            rows.append((cls.name, *ap40, *ap11, counts[1]))
        for difficulty_name in DIFFICULTIES:
            for label in ("AP40", "AP11"):
                values = [metrics[f"{cls.name}/{difficulty_name}/{label}"] for cls in self._evaluated()]
                metrics[f"mAP_{difficulty_name}_{label}"] = _mean_defined(values)
        mean_row: tuple[Cell, ...] = ("mean", *(metrics[f"mAP_{d}_AP40"] for d in DIFFICULTIES),
                                      *(metrics[f"mAP_{d}_AP11"] for d in DIFFICULTIES),
                                      sum(int(row[-1]) for row in rows))
        columns = ("class", *(f"{d} AP40" for d in DIFFICULTIES), *(f"{d} AP11" for d in DIFFICULTIES),
                   "moderate GT")
        few = [(str(row[0]), int(row[-1])) for row in rows if 0 < int(row[-1]) < FEW_OBJECTS]
        notes = tuple(
            f"{name} has {count} moderate object{'s' if count != 1 else ''}, fewer than the devkit's {FEW_OBJECTS} "
            f"recall points: it samples at most one score threshold per object, so its AP is capped far below "
            f"100 even for perfect detections; evaluate on more images for a figure to compare"
            for name, count in few)
        return EvaluationResult("kitti_ap", metrics, f"mAP_{HEADLINE_DIFFICULTY}_AP40", columns, (*rows, mean_row),
                                notes, curves)


def _curve(cls: _Class, precision: np.ndarray, ap40: float) -> PrecisionRecall:
    """The 41 interpolated precisions the class's AP40 is the mean of (points 1..40), at
    their nominal recall i/40; a copy, so the curve never shares the evaluator's array."""
    return PrecisionRecall(recall=RECALL_POINTS.copy(), precision=precision.copy(), ap=ap40,
                           iou=cls.min_overlap, difficulty=HEADLINE_DIFFICULTY)


def _mean_defined(values: list[float]) -> float:
    defined = [value for value in values if not np.isnan(value)]
    return float(np.mean(defined)) if defined else float("nan")


@attrs.frozen
class _ClassImage:
    """One image seen by one class, before a difficulty is chosen: the devkit's cleanData
    split into what every difficulty shares (classes, overlaps, DontCare) and
    :meth:`frame` (what depends on the difficulty's limits)."""

    min_overlap: float
    gt_is_class: np.ndarray  # (G,) bool, over the ground truths of the class or its neighbour
    gt_height: np.ndarray
    gt_occluded: np.ndarray
    gt_truncated: np.ndarray
    det_is_class: np.ndarray  # (D,) bool
    det_height: np.ndarray
    overlaps: np.ndarray  # (G, D) IoU
    in_dont_care: np.ndarray  # (D,) bool
    scores: tuple[float, ...]

    @classmethod
    def of(cls, evaluated: _Class, truth: ImageTruth, found: ImageDetections) -> _ClassImage:
        gt_names = [name.lower() for name in truth.names]
        # Ground truths of other classes are skipped by computeStatistics: leave them out.
        kept = np.array([name in (evaluated.key, NEIGHBOUR.get(evaluated.key)) for name in gt_names], dtype=bool)
        boxes = truth.boxes[kept]
        dont_care = truth.boxes[[name == DONT_CARE for name in gt_names]]
        if len(dont_care) and len(found.boxes):
            # Devkit: boxoverlap(det, dontcare, 0), the intersection over the detection's area,
            # compared with the class's minimum overlap.
            overlap = box_overlap(found.boxes, dont_care, over_first_area=True)
            # One bool per detection: any() over an axis of a 2-D array gives an array.
            in_dont_care = cast(np.ndarray, (overlap > evaluated.min_overlap).any(axis=1))
        else:
            in_dont_care = np.zeros(len(found.boxes), dtype=bool)
        return cls(
            min_overlap=evaluated.min_overlap,
            gt_is_class=np.array([name == evaluated.key for name in gt_names], dtype=bool)[kept],
            gt_height=boxes[:, 3] - boxes[:, 1],
            gt_occluded=truth.occluded[kept],
            gt_truncated=truth.truncated[kept],
            det_is_class=np.array([name.lower() == evaluated.key for name in found.names], dtype=bool),
            det_height=np.abs(found.boxes[:, 3] - found.boxes[:, 1]),
            overlaps=box_overlap(boxes, found.boxes),
            in_dont_care=in_dont_care,
            scores=tuple(float(score) for score in found.scores),
        )

    def frame(self, difficulty: int) -> _Frame:
        # Difficulties nest: a box too occluded, truncated or small for this one is ignored.
        too_hard = ((self.gt_occluded > MAX_OCCLUSION[difficulty])
                    | (self.gt_truncated > MAX_TRUNCATION[difficulty])
                    | (self.gt_height < MIN_HEIGHT[difficulty]))
        gt_ignored = np.where(self.gt_is_class & ~too_hard, 0, 1)
        # The height comes first, whatever the class (devkit cleanData).
        det_ignored = np.where(self.det_height < MIN_HEIGHT[difficulty], 1, np.where(self.det_is_class, 0, -1))
        usable = det_ignored != -1
        candidates = tuple(
            tuple((int(det), float(self.overlaps[row, det]))
                  for det in np.flatnonzero(usable & (self.overlaps[row] > self.min_overlap)))
            for row in range(len(gt_ignored))
        )
        may_be_fp = (det_ignored == 0) & ~self.in_dont_care
        return _Frame(
            gt_ignored=tuple(int(v) for v in gt_ignored),
            det_ignored=tuple(int(v) for v in det_ignored),
            scores=self.scores,
            candidates=candidates,
            may_be_fp=tuple(bool(v) for v in may_be_fp),
            fp_scores=tuple(sorted(score for score, fp in zip(self.scores, may_be_fp) if fp)),
            sorted_scores=tuple(sorted(self.scores)),
        )


def _precision(frames: list[_Frame], n_gt: int) -> np.ndarray:
    """The devkit's eval_class for one class and difficulty: 41 interpolated precisions."""
    precision = np.zeros(N_SAMPLE_PTS)
    if n_gt == 0:
        return precision
    tp_scores = [score for frame in frames for score in _statistics(frame, compute_fp=False)[3]]
    thresholds = get_thresholds(tp_scores, n_gt)[:N_SAMPLE_PTS]
    tp = np.zeros(len(thresholds))
    fp = np.zeros(len(thresholds))
    for frame in frames:
        if not frame.scores:
            continue  # no detection: no TP and no FP at any threshold
        # The statistics change only when another detection passes the threshold:
        # compute them once per distinct set of detections above it.
        cache: dict[int, tuple[int, int]] = {}
        for index, threshold in enumerate(thresholds):
            above = len(frame.sorted_scores) - bisect.bisect_left(frame.sorted_scores, threshold)
            if above not in cache:
                frame_tp, frame_fp, _, _ = _statistics(frame, compute_fp=True, threshold=threshold)
                cache[above] = (frame_tp, frame_fp)
            tp[index] += cache[above][0]
            fp[index] += cache[above][1]
    shown = tp + fp
    precision[: len(thresholds)] = np.divide(tp, shown, out=np.zeros_like(tp), where=shown > 0)
    # Interpolate: the best precision at this recall or any higher one.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return precision


def kitti_ap_evaluator(params: KittiAPParams, *, classes: tuple[str, ...]) -> KittiAPEvaluator:
    """The factory: evaluates the KITTI classes among ``classes`` (SpecError if none)."""
    evaluated = kitti_classes_of(tuple(classes))
    if not evaluated:
        raise SpecError(f"kitti_ap evaluates {', '.join(KITTI_CLASSES)}, none of which is among the classes "
                        f"{', '.join(classes)}", field="classes", expected=KITTI_CLASSES, found=tuple(classes))
    return KittiAPEvaluator(evaluated, params)
