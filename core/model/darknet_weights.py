"""Darknet ``.weights`` files read into a built model: ``run.py import-weights``.

The format (darknet's ``load_weights``): a header of major, minor and revision
(int32 each), then ``seen``, the images trained on (int64 when
``major * 10 + minor >= 2``, else int32); then, for every convolution in cfg
order, float32s: with batch norm its beta, gamma, rolling mean and rolling
variance, else its bias; then the kernel in (out, in, h, w) order. Nothing else:
a file's size is the header plus four bytes per parameter, so every byte is
accounted for before anything is assigned.

Which convolutions, in which order, a backbone or head says through its
component's ``darknet`` layout (:class:`detplug.core.plan.specs.Component`). A
file holds either the whole model (backbone then head, as yolov3.cfg) or the
backbone alone (``darknet53.conv.74``).

Darknet normalises with ``(x - mean) / (sqrt(var) + 1e-6)``, Keras with
``(x - mean) / sqrt(var + epsilon)``; gamma is rescaled so that a loaded model
computes what Darknet computes, exactly, at inference.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from detplug.core.errors import DetplugError

#: Darknet's batch-norm denominator: sqrt(variance) + this (pjreddie's normalize_cpu).
DARKNET_BN_EPSILON = 1e-6


class DarknetWeightsError(DetplugError):
    """A Darknet file that does not fit the model, or cannot be read."""


@attrs.frozen
class DarknetHeader:
    major: int
    minor: int
    revision: int
    seen: int
    size: int  # bytes

    def describe(self) -> str:
        return f"darknet {self.major}.{self.minor}.{self.revision}, seen {self.seen:,} images"


def read_header(data: bytes, path: Path) -> DarknetHeader:
    """The header at the start of ``data``; DarknetWeightsError when it is cut short."""
    if len(data) < 12:
        raise DarknetWeightsError(f"{path}: {len(data)} bytes is too short for a Darknet header (12 to 20 bytes)")
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    fmt, size = ("<q", 20) if wide else ("<i", 16)
    if len(data) < size:
        raise DarknetWeightsError(f"{path}: {len(data)} bytes is too short for its Darknet {major}.{minor} "
                                  f"header ({size} bytes)")
    (seen,) = struct.unpack_from(fmt, data, 12)
    return DarknetHeader(major, minor, revision, seen, size)


@attrs.frozen
class DarknetConv:
    """One convolution of the file: the Keras Conv2D, its BatchNormalization if any, and
    for an output conv whose channels Darknet orders differently, which Darknet channel
    each of the Keras conv's output channels takes."""

    conv: Any
    batch_norm: Any | None
    channel_order: tuple[int, ...] | None = None

    @property
    def parameters(self) -> int:
        kernel = int(np.prod(self.conv.kernel.shape))
        filters = int(self.conv.kernel.shape[-1])
        return kernel + (4 * filters if self.batch_norm is not None else filters)


@attrs.frozen
class DarknetPart:
    """A part of the model (backbone, head) with its convolutions in Darknet order."""

    label: str
    convs: tuple[DarknetConv, ...]

    @property
    def parameters(self) -> int:
        return sum(conv.parameters for conv in self.convs)


#: One entry of a component's Darknet layout: conv layer name, batch-norm layer name or
#: None, and optionally the Darknet channel of each output channel.
LayoutEntry = tuple[str, str | None] | tuple[str, str | None, Sequence[int]]


def layout(model: Any, names: Sequence[LayoutEntry], label: str) -> DarknetPart:
    """``names`` (as a component's ``darknet`` layout gives them) looked up in ``model``."""
    convs = []
    for entry in names:
        conv_name, bn_name = entry[0], entry[1]
        order = tuple(int(i) for i in entry[2]) if len(entry) > 2 else None
        try:
            conv = model.get_layer(conv_name)
            batch_norm = model.get_layer(bn_name) if bn_name is not None else None
        except ValueError as error:
            raise DarknetWeightsError(f"{label}: its Darknet layout names a layer the model lacks ({error})") from None
        if batch_norm is None and not conv.use_bias:
            raise DarknetWeightsError(f"{label}: convolution '{conv_name}' has neither batch norm nor a bias, "
                                      f"which a Darknet file cannot describe")
        if order is not None and sorted(order) != list(range(int(conv.filters))):
            raise DarknetWeightsError(f"{label}: the channel order of '{conv_name}' is not a permutation "
                                      f"of its {conv.filters} channels")
        convs.append(DarknetConv(conv, batch_norm, order))
    return DarknetPart(label, tuple(convs))


@attrs.frozen
class LoadedWeights:
    """What :func:`load_darknet` put where."""

    header: DarknetHeader
    parts: tuple[DarknetPart, ...]
    skipped: tuple[str, ...]  # parts the file does not cover
    #: Class-dependent convolutions left as they were: the file has another class count.
    new: tuple[DarknetConv, ...] = ()
    #: (the file's classes, the model's) when they differ.
    classes: tuple[int, int] | None = None

    @property
    def parameters(self) -> int:
        return sum(part.parameters for part in self.parts) - sum(conv.parameters for conv in self.new)

    def describe(self, path: Path) -> str:
        loaded = "; ".join(f"{part.label} {part.parameters:,} ({len(part.convs)} convolutions)"
                           for part in self.parts)
        line = f"loaded {self.parameters:,} parameters from {path} ({self.header.describe()}): {loaded}"
        if self.skipped:
            line += f"; not in the file, left as they were: {', '.join(self.skipped)}"
        return line


def expected_sizes(parts: Sequence[DarknetPart], header_size: int, *, whole: bool = True) -> dict[str, int]:
    """File sizes in bytes that fit: the whole model (when every part with weights has a
    Darknet layout), and its first part (the backbone) alone."""
    sizes = {"the whole model": header_size + 4 * sum(part.parameters for part in parts)} if whole else {}
    if len(parts) > 1 or not whole:
        sizes[f"{parts[0].label} alone"] = header_size + 4 * parts[0].parameters
    return sizes


def _file_classes(parts: Sequence[DarknetPart], size: int, header_size: int, num_classes: int) -> int | None:
    """The class count for which the whole model's file would be ``size`` bytes, when only
    the class-dependent convolutions (those whose channels a layout reorders: Darknet's
    [yolo] outputs, anchors x (5 + classes) channels) differ; None when no count fits."""
    fixed, per_class = 0, 0
    for part in parts:
        for conv in part.convs:
            if conv.channel_order is None:
                fixed += conv.parameters
                continue
            anchors = len(conv.channel_order) // (5 + num_classes)
            weights_per_filter = conv.parameters // int(conv.conv.filters)  # kernel inputs + bias
            fixed += 5 * anchors * weights_per_filter
            per_class += anchors * weights_per_filter
    floats, remainder = divmod(size - header_size, 4)
    if remainder or per_class == 0 or (floats - fixed) % per_class or floats < fixed:
        return None
    return (floats - fixed) // per_class


def load_darknet(path: str | Path, parts: Sequence[DarknetPart], *, unmapped: Sequence[str] = (),
                 num_classes: int | None = None) -> LoadedWeights:
    """Read ``path`` into ``parts`` (in file order); every byte is checked to belong to a
    convolution before any weight is assigned. ``unmapped`` names parts with weights but
    no Darknet layout: only a file of the parts before them fits then.

    With ``num_classes`` (``init_from``), a whole-model file of another class count fits
    too: its class-dependent output convolutions are skipped, and those of the model stay
    as they were (``LoadedWeights.new``)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DarknetWeightsError(f"cannot read the Darknet weights {path} ({error})") from None
    header = read_header(data, path)
    if not parts:
        raise DarknetWeightsError(f"no part of the plan's model says how Darknet stores it "
                                  f"({', '.join(unmapped)}); a Darknet file cannot be read into it")
    sizes = expected_sizes(parts, header.size, whole=not unmapped)
    covered = {size: key for key, size in reversed(list(sizes.items()))}
    file_classes = None
    if len(data) not in covered and num_classes is not None and not unmapped:
        file_classes = _file_classes(parts, len(data), header.size, num_classes)
        if file_classes is not None:
            covered[len(data)] = "the whole model"
    if len(data) not in covered:
        options = ", or ".join(f"{size:,} bytes for {key}" for key, size in sizes.items())
        why = " (more bytes than the model holds)" if len(data) > max(sizes.values()) else ""
        raise DarknetWeightsError(
            f"{path} is {len(data):,} bytes{why}, but with its {header.size}-byte header the plan's model "
            f"takes {options}; is it the weights of this network, at this width and class count?"
        )
    chosen = parts if covered[len(data)] == "the whole model" else parts[:1]
    values = np.frombuffer(data, dtype="<f4", offset=header.size)
    offset = 0
    assignments = []
    new = []
    for part in chosen:
        for conv in part.convs:
            kernel_shape = tuple(int(d) for d in conv.conv.kernel.shape)  # (h, w, in, out)
            filters = kernel_shape[-1]
            if file_classes is not None and conv.channel_order is not None and num_classes is not None:
                anchors = len(conv.channel_order) // (5 + num_classes)
                file_filters = anchors * (5 + file_classes)
                if file_filters != filters:  # another class count: the file's values are skipped
                    per_filter = conv.parameters // filters
                    offset += file_filters * per_filter
                    new.append(conv)
                    continue
            if conv.batch_norm is not None:
                beta, gamma, mean, variance = (values[offset + i * filters: offset + (i + 1) * filters]
                                               for i in range(4))
                offset += 4 * filters
                epsilon = float(conv.batch_norm.epsilon)
                scale = np.sqrt(variance.astype(np.float64) + epsilon) / (np.sqrt(variance) + DARKNET_BN_EPSILON)
                normalisation = [(gamma * scale).astype(np.float32), beta, mean, variance]
                if conv.channel_order is not None:
                    normalisation = [vector[list(conv.channel_order)] for vector in normalisation]
                assignments.append((conv.batch_norm, normalisation))
                bias = None
            else:
                bias = values[offset: offset + filters]
                offset += filters
            count = int(np.prod(kernel_shape))
            h, w, c, n = kernel_shape
            kernel = values[offset: offset + count].reshape(n, c, h, w).transpose(2, 3, 1, 0)
            offset += count
            if conv.channel_order is not None:
                order = list(conv.channel_order)
                kernel, bias = kernel[..., order], None if bias is None else bias[order]
            assignments.append((conv.conv, [kernel] if bias is None else [kernel, bias]))
    assert offset * 4 + header.size == len(data)  # the sizes above were checked
    for layer, weights in assignments:
        layer.set_weights([np.ascontiguousarray(weight, dtype=np.float32) for weight in weights])
    skipped = tuple(part.label for part in parts[len(chosen):]) + tuple(unmapped)
    classes = (file_classes, num_classes) if new and file_classes is not None and num_classes is not None else None
    return LoadedWeights(header, tuple(chosen), skipped, tuple(new), classes)
