"""What every check shares: the error, the default chains, building a component."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from detplug.core.plan.anchors import anchor_pixels, anchors_to_ratios
from detplug.core.plan.specs import KINDS, Chain, Component, ImageSpec, LabelSpec, NoParams, SpecError

#: The kinds whose factory builds a Keras model (or layer) from the chain.

#: Two image sizes, so a component that hard-codes one size (a static reshape
#: built for 416x416) fails; both are multiples of 32 and not square.
DEFAULT_IMAGE_SIZES = ((64, 96), (96, 128))
DEFAULT_CLASSES = ("car", "pedestrian", "cyclist")
DEFAULT_MAX_BOXES = 8
DEFAULT_ANCHORS = "coco_yolov3"
#: Batch size of the concrete tensors the checks feed; 2 tells batch from other axes.
BATCH = 2


class ContractError(AssertionError):
    """A component breaks its kind's contract; the message says which check and how.

    An AssertionError, so pytest reports it as a failed test rather than an error.
    """

    def __init__(self, component: Component, check: str, message: str, *,
                 expected: Any = None, found: Any = None) -> None:
        self.component = component
        self.check = check
        self.expected = expected
        self.found = found
        super().__init__(f"{component.kind} '{component.name}': {check}: {message}")


# -- chains --


def default_chains(kind: str) -> tuple[Chain, ...]:
    """Ready chains holding everything upstream of ``kind``, one per default image size.

    Images 64x96 and 96x128, three classes, at most 8 boxes, YOLOv3's COCO
    anchors as ratios of the image; a head gets Darknet-53's features at width
    0.125, a decoder YOLOv3's head outputs, a loss and a trainer the decoded
    outputs. A dataset gets the empty chain: it is the start of the chain.
    """
    if kind not in KINDS:
        raise ValueError(f"there is no component kind '{kind}'; the kinds are: {', '.join(KINDS)}")
    if kind == "dataset":
        return (Chain(),)
    return tuple(_chain_for(kind, height, width) for height, width in DEFAULT_IMAGE_SIZES)


def _chain_for(kind: str, height: int, width: int) -> Chain:
    # The built-ins' own spec functions give the upstream links, so the chains a
    # third-party head or loss is checked with are exactly what a plan gives it.
    from detplug.plugins.backbones import DARKNET53, DarknetParams
    from detplug.plugins.decoders import YOLO_DECODER
    from detplug.plugins.heads import YOLOV3_FPN, YoloV3HeadParams

    image = ImageSpec(height, width)
    chain = Chain(
        image=image,
        labels=LabelSpec(DEFAULT_CLASSES, DEFAULT_MAX_BOXES),
        anchors=anchors_to_ratios(anchor_pixels(DEFAULT_ANCHORS), image),
    )
    if kind == "backbone":
        return chain
    chain = chain.evolve(features=DARKNET53.spec(DarknetParams(width=0.125), chain))
    if kind == "head":
        return chain
    chain = chain.evolve(head=YOLOV3_FPN.spec(YoloV3HeadParams(), chain))
    if kind == "decoder":
        return chain
    return chain.evolve(decoded=YOLO_DECODER.spec(NoParams(), chain))


def describe_chain(chain: Chain) -> str:
    """The chain in a few words, for check labels: ``image 64x96x3, 3 classes``."""
    if chain.image is None:
        return "the empty chain"
    classes = f", {chain.labels.num_classes} classes" if chain.labels is not None else ""
    return f"{chain.image}{classes}"


# -- params, spec, factory --


def params_or_defaults(component: Component, params: Any) -> Any:
    if params is None:
        return component.params()
    if not isinstance(params, component.params):
        raise TypeError(f"params for {component.kind} '{component.name}' must be a "
                        f"{component.params.__name__} (got {params!r})")
    return params


def spec_output(component: Component, params: Any, chain: Chain, check: str) -> Any:
    """The component's spec on ``chain``; a ContractError when it rejects it."""
    try:
        return component.spec(params, chain)
    except SpecError as error:
        detail = f" ({error.field}: expected {error.expected}, found {error.found})" if error.field else ""
        raise ContractError(component, check, f"its spec function rejects {describe_chain(chain)}: "
                                              f"{error.message}{detail}") from None
    except Exception as error:
        raise not_a_spec_error(component, check, error) from error


def not_a_spec_error(component: Component, check: str, error: Exception) -> ContractError:
    # The static check turns only SpecError into a sentence naming both parts;
    # anything else reaches the user as a traceback.
    return ContractError(component, check, f"its spec function raised {type(error).__name__}: {error}; "
                                           f"a spec function reports a misfit by raising SpecError",
                         expected="SpecError", found=type(error).__name__)


def check_factory_importable(component: Component) -> Callable[..., Any]:
    """The factory string names a callable that imports; returns it."""
    from detplug.registry import RegistryError, load_factory

    check = "check_factory_importable"
    try:
        factory = load_factory(component)
    except RegistryError as error:
        raise ContractError(component, check, str(error)) from None
    except Exception as error:
        raise ContractError(component, check, f"importing its factory '{component.factory}' fails: "
                                              f"{type(error).__name__}: {error}") from error
    if not callable(factory):
        raise ContractError(component, check, f"its factory '{component.factory}' is not callable",
                            expected="a callable", found=type(factory).__name__)
    return factory


def build(component: Component, params: Any, chain: Chain, check: str) -> Any:
    """``factory(params, chain)``, the call every kind but dataset and trainer answers."""
    factory = check_factory_importable(component)
    try:
        return factory(params, chain)
    except Exception as error:
        raise ContractError(component, check, f"its factory fails on {describe_chain(chain)}: "
                                              f"{type(error).__name__}: {error}") from error
