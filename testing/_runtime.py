"""The checks that run a component on concrete tensors: losses, trainers, and a
dataset's preparation. TensorFlow is imported when a check runs."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from detplug.core.plan.specs import Chain, Component
from detplug.testing._common import (
    BATCH,
    DEFAULT_MAX_BOXES,
    ContractError,
    build,
    check_factory_importable,
    describe_chain,
    params_or_defaults,
    spec_output,
)
from detplug.testing._static import check_dataset_spec


def check_loss(component: Component, chain: Chain, *, params: Any = None) -> None:
    """The factory builds a callable ``loss(pred, target, boxes)`` that returns a finite
    (batch,) tensor with finite gradients, on zero predictions and targets (the padding
    every batch holds) and on one object; eagerly and inside ``tf.function``."""
    import numpy as np
    import tensorflow as tf

    check = f"check_loss ({describe_chain(chain)})"
    params = params_or_defaults(component, params)
    spec_output(component, params, chain, check)
    decoded = chain.require("decoded", f"{component.kind} '{component.name}'")
    loss = build(component, params, chain, check)
    if not callable(loss):
        raise ContractError(component, check, "the factory must return a callable loss(pred, target, boxes)",
                            expected="a callable", found=type(loss).__name__)
    graph_loss = tf.function(loss)
    for stride, spec in sorted(decoded.items()):
        for case, (pred, target, boxes) in _loss_cases(chain, stride, spec).items():
            where = f"stride {stride}, {case}"
            with tf.GradientTape() as tape:
                tape.watch(list(pred.values()))
                try:
                    value = loss(pred, target, boxes)
                except Exception as error:
                    raise ContractError(component, check, f"{where}: the loss fails: "
                                                          f"{type(error).__name__}: {error}") from error
            _check_per_image(component, check, where, value)
            if not tf.is_tensor(value):
                raise ContractError(component, check, f"{where}: the loss must return a TensorFlow tensor: "
                                                      f"the trainer differentiates it",
                                    expected="a tensor", found=type(value).__name__)
            gradients = tape.gradient(value, pred)
            for name, gradient in gradients.items():
                if gradient is not None and not np.all(np.isfinite(tf.convert_to_tensor(gradient).numpy())):
                    raise ContractError(component, check, f"{where}: its gradient with respect to "
                                                          f"pred['{name}'] is not finite",
                                        expected="finite", found="nan or inf")
            try:
                in_graph = graph_loss(pred, target, boxes)
            except Exception as error:
                raise ContractError(component, check, f"{where}: the loss fails inside tf.function "
                                                      f"(as the graph trainer runs it): "
                                                      f"{type(error).__name__}: {error}") from error
            if not np.allclose(np.asarray(in_graph), value.numpy(), rtol=1e-4, atol=1e-5):
                raise ContractError(component, check, f"{where}: it gives other values inside tf.function",
                                    expected=value.numpy().tolist(), found=np.asarray(in_graph).tolist())


def _check_per_image(component: Component, check: str, where: str, value: Any) -> None:
    import numpy as np

    shape = tuple(getattr(value, "shape", ()))
    if shape != (BATCH,):
        raise ContractError(component, check, f"{where}: the loss must give one value per image",
                            expected=(BATCH,), found=shape)
    if not np.all(np.isfinite(np.asarray(value))):
        raise ContractError(component, check, f"{where}: the loss is not finite",
                            expected="finite values", found=np.asarray(value).tolist())


def _loss_cases(chain: Chain, stride: int, spec: Any) -> dict[str, tuple[dict, Any, Any]]:
    """(pred, target, boxes) for one stride: all zeros, and one object in image 0."""
    import numpy as np
    import tensorflow as tf

    image, labels = chain.image, chain.labels
    assert image is not None, "the chain holds no image"
    grid_h, grid_w = image.height // stride, image.width // stride
    cell = (BATCH, grid_h, grid_w, spec.anchors)
    channels = spec.channels()
    max_boxes = labels.max_boxes if labels is not None else DEFAULT_MAX_BOXES
    zeros = (
        {name: tf.zeros((*cell, n)) for name, n in channels.items()},
        tf.zeros((*cell, 5 + spec.classes)),
        tf.zeros((BATCH, max_boxes, 4)),
    )
    rng = np.random.default_rng(stride)
    raw = rng.normal(size=(*cell, 5 + spec.classes)).astype("float32")
    yxhw = rng.uniform(0.05, 0.95, size=(*cell, 4)).astype("float32")
    pred = {"yxhw": yxhw, "objectness": _sigmoid(raw[..., 4:5]), "category": _sigmoid(raw[..., 5:]), "raw": raw}
    row, col = grid_h // 2, grid_w // 2
    anchor_h, anchor_w = chain.anchors[stride][0] if chain.anchors else (0.2, 0.2)
    box = [(row + 0.5) / grid_h, (col + 0.5) / grid_w, anchor_h, anchor_w]
    target = np.zeros((*cell, 5 + spec.classes), "float32")
    target[0, row, col, 0, :5] = [*box, 1.0]
    target[0, row, col, 0, 5] = 1.0
    boxes = np.zeros((BATCH, max_boxes, 4), "float32")
    boxes[0, 0] = box
    one_object = ({name: tf.constant(pred[name]) for name in channels}, tf.constant(target), tf.constant(boxes))
    return {"zero predictions and targets": zeros, "one object": one_object}


def _sigmoid(x: Any) -> Any:
    import numpy as np

    return (1.0 / (1.0 + np.exp(-x))).astype("float32")


def check_trainer(component: Component, chain: Chain, *, params: Any = None) -> None:
    """The factory gives a ``detplug.core.train.trainer.Trainer`` that trains one batch of a
    tiny model (finite loss parts with ``total``, changed weights) and validates one, also one
    whose last image is a blank one filling it up (``targets["real"]`` False; see
    core/data/pipeline.whole_batches), which its losses must leave out."""
    import keras
    import numpy as np
    import tensorflow as tf

    from detplug.core.data.pipeline import REAL_IMAGES
    from detplug.core.model.losses import BOXES_KEY, LossCombination
    from detplug.core.train.trainer import Trainer

    check = f"check_trainer ({describe_chain(chain)})"
    params = params_or_defaults(component, params)
    spec_output(component, params, chain, check)
    decoded = chain.require("decoded", f"{component.kind} '{component.name}'")
    model = _tiny_detector(chain)
    losses = LossCombination(losses={"l2": (1.0, _raw_l2)})
    factory = check_factory_importable(component)
    try:
        trainer = factory(params, model=model, losses=losses, optimizer=keras.optimizers.SGD(0.1))
    except Exception as error:
        raise ContractError(component, check, f"its factory fails: {type(error).__name__}: {error}") from error
    if not isinstance(trainer, Trainer):
        raise ContractError(component, check, "the factory must return a detplug.core.train.trainer.Trainer",
                            expected="Trainer", found=type(trainer).__name__)
    rng = np.random.default_rng(0)
    assert chain.image is not None and chain.labels is not None, "the chain holds no image or labels"
    images = tf.constant(rng.uniform(size=(BATCH, chain.image.height, chain.image.width, 3)).astype("float32"))
    targets = {
        str(stride): tf.zeros((BATCH, chain.image.height // stride, chain.image.width // stride,
                               spec.anchors, 5 + spec.classes))
        for stride, spec in decoded.items()
    }
    targets[BOXES_KEY] = tf.zeros((BATCH, chain.labels.max_boxes, 4))
    before = [w.numpy().copy() for w in model.trainable_weights]
    for label, step in (("train", trainer.run_train_batch), ("val", trainer.run_val_batch)):
        parts = {name: float(value) for name, value in step(images, targets).items()}
        if "total" not in parts or not all(math.isfinite(v) for v in parts.values()):
            raise ContractError(component, check, f"one {label} batch must give finite loss parts with 'total'",
                                expected="finite parts with 'total'", found=parts)
        if label == "train" and all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.trainable_weights)):
            raise ContractError(component, check, "one train batch left every weight unchanged",
                                expected="changed weights", found="unchanged")
    real = tf.constant([True] * (BATCH - 1) + [False])
    filled_up = trainer.run_val_batch(images, {**targets, REAL_IMAGES: real})
    alone = trainer.run_val_batch(images[:-1], {key: value[:-1] for key, value in targets.items()})
    found, expected = ({name: round(float(value), 5) for name, value in parts.items()} for parts in (filled_up, alone))
    if not all(math.isclose(found.get(name, math.nan), value, rel_tol=1e-4, abs_tol=1e-5)
               for name, value in expected.items()):
        raise ContractError(component, check, "a validation batch's blank images (targets['real'] False) must be "
                            "left out of its losses", expected=expected, found=found)


def _tiny_detector(chain: Chain) -> Any:
    """Image -> per stride a pooled 1x1 conv -> decoded dict: the least model a trainer trains."""
    import keras
    from keras import layers, ops

    image = chain.image
    # check_trainer, the caller, required the decoded outputs and the image.
    assert image is not None and chain.decoded is not None
    inputs = keras.Input((image.height, image.width, image.channels))
    outputs = {}
    for stride, spec in sorted(chain.decoded.items()):
        per_anchor = 5 + spec.classes
        x = layers.AveragePooling2D(stride)(inputs)
        x = layers.Conv2D(spec.anchors * per_anchor, 1)(x)
        raw = layers.Reshape((image.height // stride, image.width // stride, spec.anchors, per_anchor))(x)
        outputs[str(stride)] = {
            "yxhw": ops.sigmoid(raw[..., :4]),
            "objectness": ops.sigmoid(raw[..., 4:5]),
            "category": ops.sigmoid(raw[..., 5:]),
            "raw": raw,
        }
    return keras.Model(inputs, outputs)


def _raw_l2(pred: Mapping[str, Any], target: Any, boxes: Any) -> Any:
    import tensorflow as tf

    return tf.reduce_sum(tf.square(pred["raw"] - 1.0 - target), axis=[1, 2, 3, 4])


def check_dataset_prepares(component: Component, params: Any, *, cache_dir: str | os.PathLike,
                           data_root: str | os.PathLike | None = None) -> Any:
    """The dataset factory converts its source with ``params`` (choose small ones) into
    records whose manifest agrees with the spec: image size, classes, train and val
    images. Not run by :func:`check_component`: only the author knows params that are
    quick to prepare. Returns the PreparedData."""
    from detplug.core.data.prepared import PreparedData

    check = "check_dataset_prepares"
    spec = check_dataset_spec(component, params=params)
    factory = check_factory_importable(component)
    try:
        prepared = factory(params, data_root=data_root, cache_dir=cache_dir)
    except Exception as error:
        raise ContractError(component, check, f"its factory fails: {type(error).__name__}: {error}") from error
    if not isinstance(prepared, PreparedData):
        raise ContractError(component, check, "the factory must return detplug.core.data.prepared.PreparedData",
                            expected="PreparedData", found=type(prepared).__name__)
    # Given params, check_dataset_spec returns a DatasetSpec or raises ContractError.
    assert spec is not None, "check_dataset_prepares needs the dataset's params"
    declared = {"image_size": (spec.image.height, spec.image.width), "classes": spec.labels.classes}
    found = {"image_size": prepared.image_size, "classes": prepared.classes}
    if declared != found:
        raise ContractError(component, check, "its records' manifest disagrees with its spec",
                            expected=declared, found=found)
    for split in ("train", "val"):
        if prepared.images(split) <= 0 or not all(path.is_file() for path in prepared.files(split)):
            raise ContractError(component, check, f"the '{split}' split has no images or misses shards",
                                expected="images and shard files", found=prepared.files(split))
    return prepared
