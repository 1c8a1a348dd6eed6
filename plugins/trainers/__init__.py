"""Built-in trainers: declarations only. Both share detplug.core.train.trainer's epoch
loop and differ only in how one batch runs."""

from __future__ import annotations

from attrs import frozen

from detplug import Chain, Component, NoParams, hookimpl

PLUGIN_API = 1


@frozen(kw_only=True)
class GraphParams:
    #: Compile the step with XLA.
    jit_compile: bool = False


def _no_spec(params, chain: Chain) -> None:
    """Fits any model: trains what the chain builds; gives no tensor."""
    return None


EAGER = Component(
    kind="trainer",
    name="eager",
    summary="Runs each batch eagerly, op by op: slow, but every tensor can be inspected",
    params=NoParams,
    spec=_no_spec,
    factory="detplug.plugins.trainers.eager:eager_trainer",
)

GRAPH = Component(
    kind="trainer",
    name="graph",
    summary="Runs each batch as one tf.function graph (optionally XLA-compiled)",
    params=GraphParams,
    spec=_no_spec,
    factory="detplug.plugins.trainers.graph:graph_trainer",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [EAGER, GRAPH]
