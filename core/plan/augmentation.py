"""What the training pipeline does to images (settings only, no TensorFlow).

The ops are in augment_ops.py. The caller decides what one epoch gets:
``make_dataset(..., augment=settings.for_epoch(epoch, total_epochs))``; that
is where mosaic is turned off for the last ``mosaic_off_last`` epochs (as
YOLOX does, so the model ends on images that look like the ones it will see).
"""

from __future__ import annotations

import attrs
from attrs import field, validators


def _fraction(instance, attribute, value) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"'{attribute.name}' must be between 0 and 1 (got {value!r})")


def _below_one(instance, attribute, value) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"'{attribute.name}' must be >= 0 and < 1 (got {value!r})")


def _scale(instance, attribute, value) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"'{attribute.name}' must be > 0 and <= 1 (got {value!r})")


@attrs.frozen(kw_only=True)
class Augmentation:
    """Random changes per training image, each drawn from (seed, position in the epoch).

    Defaults are YOLOv5's flip, translate and hue, with milder scale, saturation and
    value jitter (YOLOv5: 0.5, 0.7, 0.4) for small detectors, and mosaic off.
    """

    #: Probability of a horizontal flip (Ultralytics' fliplr).
    flip: float = field(default=0.5, converter=float, validator=_fraction)
    #: Probability of an upside-down flip (Ultralytics' flipud). Off by default: most scenes
    #: have an up; aerial and microscope images do not.
    flipud: float = field(default=0.0, converter=float, validator=_fraction)
    #: Probability of a turn by 90, 180 or 270 degrees (one of the three at random), for scenes
    #: without an up. Square inputs only (the static check says so): a quarter turn of an H x W
    #: input is W x H, and fitting it back into H x W would shrink every object of that image.
    rot90: float = field(default=0.0, converter=float, validator=_fraction)
    #: Zoom drawn from [1 - scale, 1 + scale], about the image centre.
    scale: float = field(default=0.25, converter=float, validator=_below_one)
    #: Shift drawn from [-translate, translate] of the image height and width.
    translate: float = field(default=0.1, converter=float, validator=_fraction)
    #: Hue shift drawn from [-hue, hue] of the colour circle.
    hue: float = field(default=0.015, converter=float, validator=_fraction)
    #: Saturation and value (brightness) gains drawn from [1 - x, 1 + x].
    saturation: float = field(default=0.5, converter=float, validator=_fraction)
    value: float = field(default=0.3, converter=float, validator=_fraction)
    #: Probability that an image is replaced by a mosaic of four: itself and the three images
    #: next to it in the shuffled order, each shrunk to mosaic_scale, around a random centre.
    mosaic: float = field(default=0.0, converter=float, validator=_fraction)
    #: The size of each image in a mosaic, as a fraction of the input's: 0.5 halves every image,
    #: so the whole of each shows (objects at half their size); 1.0 keeps every image at its own
    #: scale and shows the part of it that falls in its quadrant (Ultralytics' mosaic), for small
    #: objects that halving would shrink below what the finest stride finds.
    mosaic_scale: float = field(default=0.5, converter=float, validator=_scale)
    #: Mosaic is turned off in the last this many epochs of the run (see :meth:`for_epoch`).
    mosaic_off_last: int = field(default=0, validator=validators.ge(0))
    #: A box cut by jitter or mosaic to less than this fraction of its area is dropped.
    min_visible: float = field(default=0.25, converter=float, validator=_fraction)

    @classmethod
    def none(cls) -> Augmentation:
        return cls(flip=0, flipud=0, rot90=0, scale=0, translate=0, hue=0, saturation=0, value=0, mosaic=0)

    @classmethod
    def flip_only(cls) -> Augmentation:
        return attrs.evolve(cls.none(), flip=0.5)

    @property
    def active(self) -> bool:
        return any((self.flip, self.flipud, self.rot90, self.scale, self.translate, self.hue, self.saturation,
                    self.value, self.mosaic))

    @property
    def geometric(self) -> bool:
        return bool(self.scale or self.translate)

    @property
    def colour(self) -> bool:
        return bool(self.hue or self.saturation or self.value)

    def for_epoch(self, epoch: int, total_epochs: int) -> Augmentation:
        """These settings for ``epoch`` (1-based) of ``total_epochs``: mosaic off when
        ``epoch > total_epochs - mosaic_off_last``."""
        if self.mosaic and epoch > total_epochs - self.mosaic_off_last:
            return attrs.evolve(self, mosaic=0.0)
        return self
