"""Where a run's steps execute: TensorFlow's own distribution strategies.

``[train] strategy`` (or ``--strategy``) picks one:

- ``default``: one device, TensorFlow's default strategy;
- ``mirrored``: every local GPU, or, without a GPU, every logical CPU device
  (``DETPLUG_CPU_REPLICAS=N`` splits the CPU into N of them, so the mirrored
  path runs on a laptop);
- ``multi_worker``: MultiWorkerMirroredStrategy over the cluster that
  ``TF_CONFIG`` describes, one process per worker;
- ``tpu``: TPUStrategy on the TPU that ``TPU_NAME`` names (or the local one).

The plan's ``batch_size`` is the global batch: each step splits it over the
replicas, and the losses are averaged over all of it, so N replicas take the
step one device would. Reading ``TF_CONFIG`` (who is the chief) needs no
TensorFlow; building a strategy imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from detplug.core.errors import DetplugError
from detplug.core.plan.settings import STRATEGIES
from detplug.core.train.context import WorkerRole

CPU_REPLICAS_VARIABLE = "DETPLUG_CPU_REPLICAS"


class DistributeError(DetplugError):
    """A strategy cannot be set up: bad TF_CONFIG, no TPU, workers that disagree."""


def worker_role(strategy: str, environ: Mapping[str, str] | None = None) -> WorkerRole:
    """The role ``TF_CONFIG`` gives this process under ``multi_worker``; the chief otherwise."""
    if strategy != "multi_worker":
        return WorkerRole()
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "")
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not text.strip():
        raise DistributeError(
            f"--strategy multi_worker needs the TF_CONFIG environment variable in every worker process, "
            f"e.g. TF_CONFIG='{example}' (index 1 on the second host); see the README's multi-worker section"
        )
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        task_type, index = str(task["type"]), int(task["index"])
        members = cluster[task_type]
        workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    except (ValueError, KeyError, TypeError) as error:
        raise DistributeError(
            f"TF_CONFIG is not a valid cluster description ({type(error).__name__}: {error}); it must be JSON "
            f"like {example}"
        ) from None
    if task_type not in ("chief", "worker"):
        raise DistributeError(f"TF_CONFIG task type '{task_type}' is not supported; use 'worker' (or 'chief')")
    if not 0 <= index < len(members):
        raise DistributeError(
            f"TF_CONFIG task index {index} is out of range: the cluster lists {len(members)} '{task_type}' "
            f"addresses"
        )
    return WorkerRole(task_type=task_type, index=index, workers=workers, has_chief=bool(cluster.get("chief")))


def cpu_replicas(environ: Mapping[str, str] | None = None) -> int:
    """How many logical CPU devices ``DETPLUG_CPU_REPLICAS`` asks for (1 when unset)."""
    environ = os.environ if environ is None else environ
    text = environ.get(CPU_REPLICAS_VARIABLE, "").strip()
    if not text:
        return 1
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise DistributeError(f"{CPU_REPLICAS_VARIABLE} must be a whole number >= 1 (got '{text}')")
    return count


def split_cpu(count: int) -> None:
    """Split the CPU into ``count`` logical devices; before TensorFlow creates its devices."""
    if count <= 1:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise DistributeError(
                f"{CPU_REPLICAS_VARIABLE}={count} came too late: TensorFlow had already set up its devices in "
                f"this process; set it before the run starts"
            ) from None


def make_strategy(name: str) -> Any:
    """The tf.distribute strategy called ``name`` (one of STRATEGIES)."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        # TensorFlow reads TF_CONFIG itself; a dead peer is noticed by its heartbeats and
        # aborts the collectives of the others (see stop_loudly_if_a_worker_is_lost).
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu_strategy(tf)
    raise DistributeError(f"unknown strategy '{name}'; choose one of {', '.join(STRATEGIES)}")


def _tpu_strategy(tf: Any) -> Any:
    address = os.environ.get("TPU_NAME", "")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, OSError, tf.errors.OpError) as error:  # OSError: metadata server
        where = f"TPU '{address}'" if address else "a local TPU"
        reason = (str(error).splitlines() or [repr(error)])[0].strip("'\"")
        raise DistributeError(
            f"--strategy tpu could not reach {where} ({reason}); "
            f"on a Cloud TPU VM run as is, elsewhere set TPU_NAME to the TPU's name or grpc:// address"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def replica_devices(strategy: Any) -> list[str]:
    """The devices of this process's replicas (none named for the default strategy)."""
    try:
        return list(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError):
        return []


def describe(strategy: Any, name: str, role: WorkerRole) -> str:
    """One line: the strategy, its replicas, and this process's devices."""
    replicas = strategy.num_replicas_in_sync
    devices = replica_devices(strategy)
    where = ", ".join(device.split("/device:")[-1] for device in devices) if devices else "one device"
    if role.workers > 1:
        where = f"{role.workers} workers; this one, {role.task_type} {role.index}, has {where}"
    return f"strategy '{name}': {replicas} replica{'s' if replicas != 1 else ''} ({where})"


def replica_sums(strategy: Any) -> Callable[[Sequence[float]], list[float]]:
    """A function that every worker calls at the same point with its numbers, and that
    returns on all of them each number's sum over every replica of every worker (one
    all-reduce, in float64); each local replica adds this process's numbers once."""
    import tensorflow as tf

    @tf.function
    def total(values: Any) -> Any:
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(values)), axis=None)

    def sums(values: Sequence[float]) -> list[float]:
        return [float(value) for value in total(tf.constant(list(values), tf.float64)).numpy()]

    return sums


def same_on_every_worker(strategy: Any, value: int, what: str, hint: str) -> None:
    """Stop with an error unless every replica holds the same ``value`` (an all-reduce of
    the value and its square: their means agree only when all values are equal)."""
    if strategy.num_replicas_in_sync == 1:
        return
    total, squares = replica_sums(strategy)([float(value), float(value) * value])
    replicas = strategy.num_replicas_in_sync
    if abs(total - replicas * value) > 0.5 or abs(squares - replicas * value * value) > 0.5:
        raise DistributeError(f"the workers disagree on {what} (this one has {value}); {hint}")


def split_shards(records: Sequence[int], workers: int) -> list[list[int]]:
    """Which shards each worker reads under ``[train] shard_by = "file"`` (indices into
    ``records``, the records of each shard), as even in records as whole files allow: the
    largest shard first goes to the worker with the fewest records so far (ties: the lower
    worker), and each worker reads its shards in their order. Needs a shard per worker."""
    if len(records) < workers:
        raise ValueError(f"{len(records)} shards cannot give each of {workers} workers one")
    shares: list[list[int]] = [[] for _ in range(workers)]
    totals = [0] * workers
    for index in sorted(range(len(records)), key=lambda i: (-records[i], i)):
        worker = min(range(workers), key=lambda w: (totals[w], len(shares[w]), w))
        shares[worker].append(index)
        totals[worker] += records[index]
    return [sorted(share) for share in shares]


def any_worker(strategy: Any) -> Callable[[bool], bool]:
    """A function that every worker calls at the same point of its loop with its own flag,
    and that returns True on all of them when any one passed True (an all-reduce of the
    flags). The workers of a multi-worker run agree with it on the step to stop at."""
    total = replica_sums(strategy)

    def agree(flag: bool) -> bool:
        return total([1.0 if flag else 0.0])[0] > 0

    return agree


def from_chief(strategy: Any, role: WorkerRole) -> Callable[[Sequence[float]], list[float]]:
    """A function that every worker calls at the same point of its loop, and that returns
    the numbers the chief passed to it on all of them (what the others pass is ignored):
    an all-reduce in which only the chief's replicas contribute. Under ``multi_worker`` the
    chief alone evaluates, and the others take its metric from here, so that every worker
    decides alike whether an epoch is the best and saves it (their saves must stay in step)."""
    local = max(1, len(replica_devices(strategy)))
    total = replica_sums(strategy)

    def share(values: Sequence[float]) -> list[float]:
        # Each of the chief's ``local`` replicas adds its share of the values.
        return total([value / local if role.is_chief else 0.0 for value in values])

    return share


def check_xla_fits(strategy: Any) -> None:
    """XLA-compiled steps across replicas need GPUs (or a TPU): on CPU devices TensorFlow
    cannot compile the replicas' all-reduce into the step, nor place one compiled step per
    logical CPU device."""
    devices = replica_devices(strategy)
    if strategy.num_replicas_in_sync > 1 and not all(_is_accelerator(device) for device in devices):
        raise DistributeError(
            f"trainer 'graph': jit_compile = true cannot run across {strategy.num_replicas_in_sync} replicas on "
            f"CPU devices ({', '.join(devices)}): TensorFlow compiles a step with XLA only where each replica "
            f"is a GPU or TPU; set jit_compile = false, or run the strategy on GPUs"
        )


def on_accelerator(strategy: Any) -> bool:
    """Whether the strategy's replicas are GPUs or TPUs (the default strategy: whether
    TensorFlow sees a GPU, where it then places the ops)."""
    import tensorflow as tf

    devices = replica_devices(strategy) or [device.name for device in tf.config.list_logical_devices("GPU")[:1]]
    return bool(devices) and all(_is_accelerator(device) for device in devices)


def _is_accelerator(device: str) -> bool:
    kind = device.split("device:")[-1].upper()
    return kind.startswith(("GPU", "TPU"))


class WorkerLostError(DistributeError):
    """Another worker of a multi-worker run stopped; this one stops too, loudly."""


@contextlib.contextmanager
def stop_loudly_if_a_worker_is_lost(role: WorkerRole, shared_store: Any) -> Iterator[None]:
    """Turn the errors with which TensorFlow aborts the collectives of a cluster that lost
    a worker (its heartbeats stop) into one that says what happened and how to resume."""
    if role.workers == 1:
        yield
        return
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
            tf.errors.CancelledError, tf.errors.InternalError) as error:
        reason = re.sub(r"\{\{.*?\}\}", "", " ".join(str(error.message).split("\n")[:2])).strip()
        try:
            saved = f"after epoch {shared_store.epoch()}"
        except DetplugError:
            saved = "unreadable"
        raise WorkerLostError(
            f"{role.describe()}: the cluster lost a worker and this one stopped too ({reason}); the last "
            f"checkpoint in {shared_store.folder} is {saved}; start every worker again with the same command "
            f"and TF_CONFIG to resume from it"
        ) from None
