"""From decoded outputs to boxes in the original image: NMS and the serving module.

Post-processing is TensorFlow's own ``tf.image.combined_non_max_suppression``.
:class:`DetectorModule` holds the whole path -- letterbox a uint8 image of
any size, run the model, NMS, map boxes back to the image's pixels -- as one
tf.function; ``--predict`` calls it in process and ``--export`` saves it as a
SavedModel, so both give the same boxes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from detplug.core.data.letterbox import PAD_VALUE
from detplug.core.plan.settings import EvaluationSettings
from detplug.core.plan.specs import ImageSpec

#: A predicted box narrower or lower than this many input pixels, once clipped to the
#: image, is no detection (YOLOv5's min_wh): NMS would otherwise pass it on as a line.
MIN_BOX_PIXELS = 2.0


def flatten_predictions(outputs: Mapping[str, Mapping[str, tf.Tensor]],
                        image: ImageSpec) -> tuple[tf.Tensor, tf.Tensor]:
    """All strides' predictions as boxes (B, N, 4) y1 x1 y2 x2 clipped to [0, 1] of the
    model input, and per-class scores (B, N, C) = objectness x class probability.

    Boxes under :data:`MIN_BOX_PIXELS` in height or width after clipping score 0. An
    untrained cell can predict a box of zero height and many image widths (its size
    logits are unbounded); clipped, that is a line across the image, which NMS keeps
    at the cell's score: the "wall of horizontal boxes" of an undertrained model.
    """
    minimum = tf.constant([MIN_BOX_PIXELS / image.height, MIN_BOX_PIXELS / image.width], tf.float32)
    boxes, scores = [], []
    for stride in sorted(outputs, key=int):
        decoded = outputs[stride]
        yxhw = tf.cast(decoded["yxhw"], tf.float32)
        batch = tf.shape(yxhw)[0]
        centre, size = yxhw[..., :2], yxhw[..., 2:]
        corners = tf.clip_by_value(tf.concat([centre - size / 2, centre + size / 2], -1), 0.0, 1.0)
        big_enough = tf.reduce_all(corners[..., 2:] - corners[..., :2] >= minimum, axis=-1, keepdims=True)
        score = tf.cast(decoded["objectness"], tf.float32) * tf.cast(decoded["category"], tf.float32)
        score = tf.where(big_enough, score, 0.0)
        boxes.append(tf.reshape(corners, [batch, -1, 4]))
        scores.append(tf.reshape(score, [batch, -1, score.shape[-1]]))
    return tf.concat(boxes, 1), tf.concat(scores, 1)


def non_max_suppression(boxes: tf.Tensor, scores: tf.Tensor, *, max_detections: int, iou_threshold: float,
                        score_threshold: float) -> dict[str, tf.Tensor]:
    """Per-class NMS; boxes (B, K, 4) y1 x1 y2 x2 in [0, 1], scores, classes (int32), and
    ``num_detections`` (B,), the valid rows of each image (the rest are zero padding)."""
    nmsed = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores, max_output_size_per_class=max_detections, max_total_size=max_detections,
        iou_threshold=iou_threshold, score_threshold=score_threshold, clip_boxes=True,
    )
    return {
        "boxes": nmsed.nmsed_boxes,
        "scores": nmsed.nmsed_scores,
        "classes": tf.cast(nmsed.nmsed_classes, tf.int32),
        "num_detections": nmsed.valid_detections,
    }


#: Each model's traced detection functions, by their settings: evaluating every few epochs
#: traces the model once, not once per evaluation.
_DETECTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def batch_detector(model: keras.Model, image: ImageSpec, max_detections: int, iou_threshold: float,
                   score_threshold: float) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """Model, flattening and NMS as one tf.function over batches of model-input images. Tracing
    costs a few seconds once; the model run eagerly costs more than that on every batch."""
    key = (image, max_detections, iou_threshold, score_threshold)
    functions = _DETECTORS.setdefault(model, {})
    if key not in functions:
        @tf.function(input_signature=[tf.TensorSpec([None, image.height, image.width, 3], tf.float32)])
        def detect(images: tf.Tensor) -> dict[str, tf.Tensor]:
            boxes, scores = flatten_predictions(model(images, training=False), image)
            return non_max_suppression(boxes, scores, max_detections=max_detections, iou_threshold=iou_threshold,
                                       score_threshold=score_threshold)

        functions[key] = detect
    return functions[key]


def letterbox_geometry(source_hw: tf.Tensor, target: ImageSpec) -> tuple[tf.Tensor, tf.Tensor]:
    """(resized (h, w), offset (top, left)) as core/data/letterbox.py computes them, in TensorFlow."""
    source = tf.cast(source_hw, tf.float64)
    target_hw = tf.constant([target.height, target.width], tf.float64)
    scale = tf.reduce_min(target_hw / source)
    # Python's round() and tf.round both round halves to even: the converter's sizes, exactly.
    resized = tf.clip_by_value(tf.round(source * scale), 1.0, target_hw)
    offset = tf.math.floordiv(target_hw - resized, 2.0)
    return tf.cast(resized, tf.int32), tf.cast(offset, tf.int32)


def letterbox_images(images: tf.Tensor, target: ImageSpec) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """uint8 images (B, h, w, 3) of one size to the model input (B, H, W, 3) float32 in [0, 1]."""
    resized, offset = letterbox_geometry(tf.shape(images)[1:3], target)
    scaled = tf.image.resize(tf.cast(images, tf.float32), resized, method="bilinear", antialias=True)
    padded = tf.pad(scaled - PAD_VALUE, [[0, 0], [offset[0], target.height - resized[0] - offset[0]],
                                         [offset[1], target.width - resized[1] - offset[1]], [0, 0]]) + PAD_VALUE
    padded = tf.ensure_shape(padded, [None, target.height, target.width, 3])
    return tf.clip_by_value(padded, 0.0, 255.0) / 255.0, resized, offset


def to_source_pixels(boxes: tf.Tensor, source_hw: tf.Tensor, target: ImageSpec) -> tf.Tensor:
    """Boxes y1 x1 y2 x2 in [0, 1] of the letterboxed input to x1 y1 x2 y2 pixels of the source."""
    resized, offset = letterbox_geometry(source_hw, target)
    scale = tf.cast(resized, tf.float32) / tf.cast(source_hw, tf.float32)
    target_hw = tf.constant([target.height, target.width], tf.float32)
    y = (boxes[..., 0::2] * target_hw[0] - tf.cast(offset[0], tf.float32)) / scale[0]
    x = (boxes[..., 1::2] * target_hw[1] - tf.cast(offset[1], tf.float32)) / scale[1]
    source = tf.cast(source_hw, tf.float32)
    y, x = tf.clip_by_value(y, 0.0, source[0]), tf.clip_by_value(x, 0.0, source[1])
    return tf.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)


class DetectorModule(tf.Module):
    """The servable detector: uint8 images of any size in, boxes in their pixels out."""

    def __init__(self, model: keras.Model, image: ImageSpec, classes: Sequence[str],
                 settings: EvaluationSettings, *, score_threshold: float | None = None) -> None:
        super().__init__(name="detplug_detector")
        self.model = model
        self.image = image
        self.class_names = tf.constant(list(classes))
        self.settings = settings
        self.score_threshold = settings.score_threshold if score_threshold is None else score_threshold

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """boxes (B, K, 4) x1 y1 x2 y2 pixels, scores (B, K), classes (B, K) int32,
        class_names (B, K) string, num_detections (B,): rows past it are padding."""
        inputs, _, _ = letterbox_images(images, self.image)
        boxes, scores = flatten_predictions(self.model(inputs, training=False), self.image)
        found = non_max_suppression(boxes, scores, max_detections=self.settings.max_detections,
                                    iou_threshold=self.settings.iou_threshold,
                                    score_threshold=self.score_threshold)
        found["boxes"] = to_source_pixels(found["boxes"], tf.shape(images)[1:3], self.image)
        found["class_names"] = tf.gather(self.class_names, found["classes"])
        return found


def valid_rows(found: Mapping[str, tf.Tensor], index: int = 0) -> dict[str, np.ndarray]:
    """Image ``index``'s detections as numpy arrays, padding removed."""
    count = int(found["num_detections"][index])
    return {key: np.asarray(value[index][:count]) for key, value in found.items() if key != "num_detections"}
