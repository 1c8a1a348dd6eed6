"""``--export DIR --format tflite``: the trained detector as one ``model.tflite`` that runs on
TFLite's builtin ops only, so the plain ``tf.lite.Interpreter`` / LiteRT runs it without the
Select TF ops (Flex) delegate.

Two things of the SavedModel have no builtin op, and are done otherwise here:

- Letterboxing an image of any size is an antialiased resize (``tf.ScaleAndTranslate``,
  neither builtin nor Flex) and a TFLite model needs a fixed input size anyway. The file
  takes one uint8 image (1, H, W, 3) at the plan's input size; the caller letterboxes (the
  training records hold images exactly so) and boxes come out in pixels of that input.
- ``tf.image.combined_non_max_suppression`` converts only to the Flex op
  CombinedNonMaxSuppression. :func:`per_class_nms` computes the same per-class greedy NMS
  with one builtin NON_MAX_SUPPRESSION_V5 per class and a TOPK_V2 over their results.

``int8`` calibrates on images of the plan's training records and keeps the input uint8 and
the outputs float32 (boxes in pixels, scores) and int32; NMS runs in float.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import keras
import numpy as np
import tensorflow as tf

from detplug.core.data import records
from detplug.core.disk import writing
from detplug.core.errors import DataError
from detplug.core.model.inference import DetectorModule, flatten_predictions
from detplug.core.plan.specs import ImageSpec

#: ``--quantize``: none keeps float32 weights; float16 halves the file, computing in float32;
#: int8 quarters it and computes the convolutions in int8.
QUANTIZATIONS = ("none", "float16", "int8")
#: ``--calibration-images`` when not given: images of the training records int8 calibrates on.
DEFAULT_CALIBRATION_IMAGES = 100
FILE_NAME = "model.tflite"
SIGNATURE = "serving_default"
OUTPUTS = ("boxes", "scores", "classes", "class_names", "num_detections")


@attrs.frozen
class TFLiteExport:
    """What :func:`write_tflite` wrote, for the one line the command prints."""

    path: Path
    image: ImageSpec
    quantize: str
    calibration_images: int
    size_bytes: int

    def describe(self) -> str:
        calibrated = f" (calibrated on {self.calibration_images} training images)" if self.quantize == "int8" else ""
        return (f"exported {self.path} ({self.size_bytes / 1024:,.0f} KB, quantization {self.quantize}{calibrated}): "
                f"signature {SIGNATURE}(images: uint8 [1, {self.image.height}, {self.image.width}, 3], letterboxed "
                f"by the caller) -> boxes (x1 y1 x2 y2 pixels of that input), scores, classes, class_names, "
                f"num_detections")


def per_class_nms(boxes: tf.Tensor, scores: tf.Tensor, *, max_detections: int, iou_threshold: float,
                  score_threshold: float) -> dict[str, tf.Tensor]:
    """One image's NMS as ``tf.image.combined_non_max_suppression`` computes it (greedy NMS
    per class, then the ``max_detections`` best over all classes), in builtin TFLite ops.

    ``boxes`` (N, 4) y1 x1 y2 x2 and ``scores`` (N, C). Each class is one NMS op: shifting each
    class's boxes apart to do all classes in one op would need offsets of up to 2C, which
    int8 quantization of that sum would blur to box-sized steps for C of a few tens.
    Returns boxes (K, 4), scores (K,), classes (K,) int32 and ``num_detections`` (scalar);
    rows past it are zeros."""
    picked_boxes, picked_scores, picked_classes, counts = [], [], [], []
    for category in range(scores.shape[-1]):
        indices, kept, count = tf.raw_ops.NonMaxSuppressionV5(
            boxes=boxes, scores=scores[:, category], max_output_size=max_detections, iou_threshold=iou_threshold,
            score_threshold=score_threshold, soft_nms_sigma=0.0, pad_to_max_output_size=True)
        picked_boxes.append(tf.gather(boxes, indices))
        # Padding sorts after every real detection, whose scores are >= score_threshold >= 0.
        picked_scores.append(tf.where(tf.range(max_detections) < count, kept, -1.0))
        picked_classes.append(tf.fill([max_detections], category))
        counts.append(count)
    all_scores = tf.concat(picked_scores, 0)
    _, order = tf.math.top_k(all_scores, k=max_detections)
    found = tf.minimum(tf.add_n(counts), max_detections)
    real = tf.range(max_detections) < found
    return {
        "boxes": tf.where(real[:, None], tf.gather(tf.concat(picked_boxes, 0), order), 0.0),
        "scores": tf.where(real, tf.gather(all_scores, order), 0.0),
        "classes": tf.where(real, tf.gather(tf.concat(picked_classes, 0), order), 0),
        "num_detections": found,
    }


def input_spec(image: ImageSpec) -> tf.TensorSpec:
    return tf.TensorSpec([1, image.height, image.width, 3], tf.uint8, name="images")


def serving_function(module: DetectorModule) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """The .tflite's ``serving_default``: :meth:`DetectorModule.serve` for one image already at
    the model's input size (its letterbox is then the identity), with builtin-op NMS."""
    image, settings = module.image, module.settings
    pixels = tf.constant([image.height, image.width, image.height, image.width], tf.float32)

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = tf.cast(images, tf.float32) / 255.0
        boxes, scores = flatten_predictions(module.model(inputs, training=False), image)
        found = per_class_nms(boxes[0], scores[0], max_detections=settings.max_detections,
                              iou_threshold=settings.iou_threshold, score_threshold=module.score_threshold)
        x1y1x2y2 = tf.gather(found["boxes"] * pixels, [1, 0, 3, 2], axis=-1)
        return {"boxes": x1y1x2y2[None], "scores": found["scores"][None], "classes": found["classes"][None],
                "class_names": tf.gather(module.class_names, found["classes"])[None],
                "num_detections": found["num_detections"][None]}

    return serve


def write_conversion_input(module: DetectorModule, folder: Path) -> Path:
    """The serving function as a SavedModel for the converter, through Keras' ExportArchive:
    a tf.Module holding the Keras 3 model converts with its weights left as uninitialised
    TFLite variables (VAR_HANDLE, READ_VARIABLE), which read as zeros; ExportArchive's
    SavedModel has them frozen into constants."""
    archive = keras.export.ExportArchive()
    archive.track(module.model)
    archive.add_endpoint(SIGNATURE, serving_function(module), input_signature=[input_spec(module.image)])
    with writing("the SavedModel the TFLite converter reads", folder):
        archive.write_out(str(folder), verbose=False)
    return folder


def convert(saved_model: Path, quantize: str, calibration: Sequence[np.ndarray] = ()) -> bytes:
    """The .tflite bytes of :func:`write_conversion_input`'s SavedModel. ``calibration``:
    uint8 images (H, W, 3) that int8 measures the value ranges on."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)} (got {quantize!r})")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # never Flex: see the docstring
    if quantize == "none":
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return converter.convert()
    return _int8(converter, calibration)


def _int8(converter: tf.lite.TFLiteConverter, calibration: Sequence[np.ndarray]) -> bytes:
    """int8 convolutions, float decoding and NMS: TensorFlow's selective quantization (the
    QuantizationDebugger's denylisted nodes). Quantized whole, the decoder's exp() of the
    size logits spans thousands of anchors on an untrained cell, and one int8 scale for that
    range rounds every real box size to zero: no detections at all."""
    if not calibration:
        raise DataError("--quantize int8 found no images in the training records to calibrate on; give the "
                        "dataset a train split, or export with --quantize float16")

    def representative() -> Iterator[list[np.ndarray]]:
        for pixels in calibration:
            yield [pixels[None]]

    converter.representative_dataset = representative
    with _no_interpreter_notice():  # the debugger opens interpreters of its own
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=representative)
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=post_processing_nodes(debugger.calibrated_model))
        return debugger.get_nondebug_quantized_model()


@contextlib.contextmanager
def _no_interpreter_notice() -> Iterator[None]:
    """tf.lite.Interpreter's notice that LiteRT replaces it says nothing to an exporting user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        yield


#: The ops whose work int8 is for.
_COMPUTE_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED"})


def post_processing_nodes(flat: bytes) -> list[str]:
    """The output tensor names of the ops from which no convolution is reached: the output
    convolutions (raw logits), decoding and NMS. Keeping the output convolutions float as
    well costs 1 % of the file and measured +3 points of AP50 on the synthetic sample (see
    the README). Op details are the interpreter's ``_get_ops_details``, as TensorFlow's own
    QuantizationDebugger reads them."""
    with _no_interpreter_notice():
        interpreter = tf.lite.Interpreter(model_content=flat)
    ops = interpreter._get_ops_details()
    names = {tensor["index"]: tensor["name"] for tensor in interpreter.get_tensor_details()}
    producer = {tensor: op["index"] for op in ops for tensor in op["outputs"]}
    feeding: set[int] = set()
    pending = [producer[tensor] for op in ops if op["op_name"] in _COMPUTE_OPS
               for tensor in op["inputs"] if tensor in producer]
    while pending:
        index = pending.pop()
        if index not in feeding:
            feeding.add(index)
            pending += [producer[tensor] for tensor in ops[index]["inputs"] if tensor in producer]
    kept = [op for op in ops if op["index"] not in feeding]
    # The quantizer knows an op of several outputs (TOPK_V2) by their names joined with ';'.
    return [name for op in kept for name in _output_names(op["outputs"], names)]


def _output_names(outputs: Sequence[int], names: dict[int, str]) -> list[str]:
    own = [names[tensor] for tensor in outputs]
    return own + ([";".join(own)] if len(own) > 1 else [])


def calibration_images(files: Sequence[Path], count: int) -> list[np.ndarray]:
    """The first ``count`` images of record shards ``files`` as uint8 (H, W, 3): the records
    hold them letterboxed to the plan's input size, as the .tflite takes them."""
    images = []
    for serialized in tf.data.TFRecordDataset([str(path) for path in files]).take(count):
        images.append(tf.io.decode_png(records.parse(serialized)["png"], channels=3).numpy())
    return images


def write_tflite(module: DetectorModule, directory: Path, *, quantize: str = "none",
                 calibration: Sequence[np.ndarray] = ()) -> TFLiteExport:
    """``directory/model.tflite``, put in place whole once converted."""
    with tempfile.TemporaryDirectory(prefix="detplug-tflite-") as scratch:
        flat = convert(write_conversion_input(module, Path(scratch) / "saved"), quantize, calibration)
    path = directory / FILE_NAME
    with writing("the TFLite model", directory):
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".{FILE_NAME}-{os.getpid()}"
        partial.write_bytes(flat)
        os.replace(partial, path)
    return TFLiteExport(path, module.image, quantize, len(calibration) if quantize == "int8" else 0, len(flat))
