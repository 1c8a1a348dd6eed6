"""check_component: every check that applies to a component's kind, in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from detplug.core.plan.shapes import MODEL_KINDS
from detplug.core.plan.specs import Chain, Component
from detplug.testing._common import check_factory_importable, default_chains, describe_chain
from detplug.testing._keras import check_built_model_serializes, check_spec_matches_keras
from detplug.testing._runtime import check_loss, check_trainer
from detplug.testing._static import check_dataset_spec, check_manifest_without_tensorflow, check_params_defaults


def check_component(component: Component, *, params: Any = None,
                    chains: Sequence[Chain] | None = None) -> list[str]:
    """Run every check that applies to ``component``'s kind; return the checks run, in order.

    ``params`` (an instance of ``component.params``; default: its defaults) is
    what the component is built with; ``chains`` (default: :func:`default_chains`)
    the upstream specs. A backbone, head or decoder is checked against Keras on
    every chain and saved and loaded on the first; a loss is run on every chain;
    a trainer trains on the first. Dataset factories are not run (see
    :func:`check_dataset_prepares`).
    """
    ran: list[str] = []

    def run(check: Callable[..., Any], *args: Any, label: str = "", **kwargs: Any) -> Any:
        result = check(component, *args, **kwargs)
        ran.append(f"{check.__name__}({label})" if label else check.__name__)
        return result

    run(check_params_defaults)
    run(check_manifest_without_tensorflow)
    run(check_factory_importable)
    chains = tuple(chains) if chains is not None else default_chains(component.kind)
    if not chains:
        raise ValueError("check_component needs at least one chain (or chains=None for the defaults)")
    if component.kind == "dataset":
        run(check_dataset_spec, params=params)
    elif component.kind in MODEL_KINDS:
        built = [run(check_spec_matches_keras, chain, params=params, label=describe_chain(chain))
                 for chain in chains]
        # Serialize the model already built for the first chain: building Darknet-53 costs seconds.
        check_built_model_serializes(component, built[0], chains[0])
        ran.append(f"check_serialization({describe_chain(chains[0])})")
    elif component.kind == "loss":
        for chain in chains:
            run(check_loss, chain, params=params, label=describe_chain(chain))
    elif component.kind == "trainer":
        run(check_trainer, chains[0], params=params, label=describe_chain(chains[0]))
    return ran
