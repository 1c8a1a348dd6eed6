"""tf.distribute: MirroredStrategy over CPU replicas equals one device, checkpoints move
between strategies, and two real worker processes train a plan together."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import RUN_PY, kill_at, make_plugin_package, run_cli, signal_at_step, write_tiny_plan

from detplug.core.train.distribute import DistributeError, WorkerRole, cpu_replicas, worker_role

REPLICA_STEPS = Path(__file__).with_name("replica_steps.py")


def cluster(ports: list[int], index: int, task_type: str = "worker", chief: int | None = None) -> str:
    addresses = [f"localhost:{port}" for port in ports]
    spec: dict = {"worker": addresses}
    if chief is not None:
        spec = {"chief": [addresses[chief]], "worker": [a for i, a in enumerate(addresses) if i != chief]}
    return json.dumps({"cluster": spec, "task": {"type": task_type, "index": index}})


# -- who is the chief: TF_CONFIG read without TensorFlow --

def test_worker_zero_is_the_chief_when_the_cluster_names_none():
    first = worker_role("multi_worker", {"TF_CONFIG": cluster([1, 2], 0)})
    second = worker_role("multi_worker", {"TF_CONFIG": cluster([1, 2], 1)})
    assert (first.is_chief, first.workers, second.is_chief) == (True, 2, False)


def test_a_chief_task_is_the_chief_and_worker_zero_is_not():
    config = {"TF_CONFIG": cluster([1, 2, 3], 0, chief=0)}
    assert worker_role("multi_worker", config).is_chief is False
    chief = worker_role("multi_worker", {"TF_CONFIG": cluster([1, 2, 3], 0, "chief", chief=0)})
    assert chief.is_chief and chief.workers == 3


def test_other_strategies_run_as_the_only_chief_whatever_tf_config_says():
    assert worker_role("mirrored", {"TF_CONFIG": cluster([1, 2], 1)}) == WorkerRole()


@pytest.mark.parametrize("config, message", [
    ("", "needs the TF_CONFIG environment variable"),
    ("{not json", "TF_CONFIG is not a valid cluster description"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG is not a valid cluster description (KeyError: 'task')"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "task index 1 is out of range"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "task type 'ps' is not supported"),
])
def test_a_bad_tf_config_is_named_with_what_to_write(config, message):
    with pytest.raises(DistributeError, match=None) as error:
        worker_role("multi_worker", {"TF_CONFIG": config})
    assert message in str(error.value)


def test_cpu_replicas_reads_a_whole_number():
    assert cpu_replicas({}) == 1
    assert cpu_replicas({"DETPLUG_CPU_REPLICAS": "4"}) == 4
    for bad in ("0", "two", "-1"):
        with pytest.raises(DistributeError, match=f"DETPLUG_CPU_REPLICAS must be a whole number >= 1 \\(got '{bad}'\\)"):
            cpu_replicas({"DETPLUG_CPU_REPLICAS": bad})


def test_multi_worker_without_tf_config_stops_before_anything_runs(tmp_path):
    plan = write_tiny_plan(tmp_path)
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    result = subprocess.run([sys.executable, str(RUN_PY), "--plan", str(plan), "--workdir", str(tmp_path / "run"),
                             "--strategy", "multi_worker"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--strategy multi_worker needs the TF_CONFIG environment variable" in result.stderr
    assert not (tmp_path / "run").exists()


def test_tpu_without_a_tpu_says_how_to_name_one(tmp_path):
    plan = write_tiny_plan(tmp_path)
    common = ("--plan", str(plan), "--workdir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
              "--strategy", "tpu")
    result = run_cli(*common, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--strategy tpu could not reach a local TPU" in result.stderr
    assert "set TPU_NAME" in result.stderr
    named = run_cli(*common, env={"TPU_NAME": "no-such-tpu"}, timeout=300)
    assert named.returncode == 2, named.stderr[-2000:]
    assert "--strategy tpu could not reach TPU 'no-such-tpu'" in named.stderr


# -- MirroredStrategy over two CPU replicas, in a fresh process (the CPU is split at start) --

def replica_steps(tmp_path: Path, mode: str, *overrides: str) -> dict:
    plan = write_tiny_plan(tmp_path)
    out = tmp_path / f"{mode}.json"
    result = subprocess.run(
        [sys.executable, str(REPLICA_STEPS), str(plan), str(tmp_path / "cache"), str(out), mode, *overrides],
        env={**os.environ, "DETPLUG_CPU_REPLICAS": "2", "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.slow(seconds=85)
def test_one_step_on_two_cpu_replicas_gives_the_weights_of_one_device(tmp_path):
    # SGD moves each weight by lr x its gradient, so equal weights mean equal gradients
    # of the global batch. (Adam's first step is lr x sign(gradient): where a gradient is
    # zero up to rounding, its sign, and so the step, is noise.)
    results = replica_steps(tmp_path, "equality", "train.optimizer=sgd")
    one, two = results["losses"]
    assert results["replicas"] == [1, 2]
    assert results["synchronized"] > 0  # batch norm uses the global batch's statistics
    assert results["initial_difference"] == 0.0
    assert one["total"] == pytest.approx(two["total"], rel=1e-5)
    assert results["changed"] == results["weights"]
    assert results["allclose"]
    assert results["step_difference"] < 1e-4 * results["step_size"]
    assert results["replicas_agree"]
    # A checkpoint written under one strategy restores exactly under the other, both ways.
    for way in ("default_to_mirrored", "mirrored_to_default"):
        assert results[way] == {"weights_equal": True, "optimizer_step": [1, 1], "slots_equal": True,
                                "replicas_agree": True}, way


@pytest.mark.slow(seconds=95)
def test_mixed_float16_trains_on_two_cpu_replicas(tmp_path):
    results = replica_steps(tmp_path, "mixed_float16")
    assert results["changed"] == results["trainable"]  # once the loss scale fits, every weight moves
    assert results["loss_scale"] < 2 ** 15  # the dynamic scale came down from Keras' start
    assert all(np.isfinite(step["total"]) for step in results["parts"])
    assert results["replicas_agree"]


@pytest.mark.slow(seconds=60)
def test_xla_runs_under_a_mirrored_strategy_and_says_why_not_across_cpu_replicas(tmp_path):
    results = replica_steps(tmp_path, "xla")
    assert np.isfinite(results["replicas1"])
    assert results["replicas2"].startswith("trainer 'graph': jit_compile = true cannot run across 2 replicas on CPU")
    assert "set jit_compile = false, or run the strategy on GPUs" in results["replicas2"]


@pytest.mark.slow(seconds=45)
def test_val_splits_smaller_than_a_batch_validate_and_evaluate_on_two_cpu_replicas(tmp_path):
    # Val splits of 1, 3 and 5 images in batches of 4 over 2 replicas: the last batch is filled
    # up with blank images, so no replica gets an empty one, and the losses leave them out.
    results = replica_steps(tmp_path, "validation", "datasets.synth.val_ratio=0.4")
    assert results["batch_size"] == 4
    for count in ("1", "3", "5"):
        alone, one, two = results["alone"][count], results["one"][count], results["two"][count]
        # One device gives the figures of the images alone, and two replicas those of one device.
        assert one["val"].keys() == alone.keys() == two["val"].keys()
        for part, value in alone.items():
            assert one["val"][part] == pytest.approx(value, rel=1e-5, abs=1e-7), (count, part)
            assert two["val"][part] == pytest.approx(value, rel=1e-5, abs=1e-7), (count, part)
        # The evaluation scores every image once, with the detections of one device.
        assert one["truths"] == two["truths"] == int(count)
        assert len(one["detections"]) == len(two["detections"]) == int(count)
        for (boxes1, scores1), (boxes2, scores2) in zip(one["detections"], two["detections"]):
            np.testing.assert_allclose(boxes2, boxes1, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(scores2, scores1, rtol=1e-4, atol=1e-6)
    assert results["batch_of_one"].endswith(
        "period 1 has batch_size 1, fewer images than the 2 replicas it is split over, so some replicas would "
        "get none; set [train] batch_size (or the period's) to at least 2, or use fewer replicas")


# -- two worker processes on localhost --

def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("localhost", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


WEIGHTS_PLUGIN = """
import os
import numpy as np
import keras
from detplug import hookimpl
PLUGIN_API = 1

@hookimpl
def detplug_train_end(run):
    if run.model is not None:
        np.savez(os.environ["TEST_WEIGHTS_FILE"], *[keras.ops.convert_to_numpy(w) for w in run.model.weights])
"""


def run_workers(tmp_path: Path, plan: Path, workdir: Path, *, extra_env: list[dict], timeout: float = 300):
    """Start one run.py per entry of ``extra_env`` as the workers of one cluster and wait for
    all, ``timeout`` seconds at most each. Whatever happens, no worker outlives the call."""
    ports = free_ports(len(extra_env))
    processes, logs = [], []
    try:
        for index, env in enumerate(extra_env):
            log = open(tmp_path / f"worker{index}-{len(list(tmp_path.glob('worker*')))}.log", "w+")
            logs.append(log)
            processes.append(subprocess.Popen(
                # --verbose: the test reads what each worker says, and the others say only warnings without it.
                [sys.executable, str(RUN_PY), "--plan", str(plan), "--workdir", str(workdir),
                 "--cache-dir", str(tmp_path / "cache"), "--strategy", "multi_worker", "--verbose"],
                # One thread each: two workers share a 2-core machine with another test.
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": cluster(ports, index),
                     "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", **env},
                stdout=log, stderr=subprocess.STDOUT, text=True,
            ))
        codes = [process.wait(timeout=timeout) for process in processes]
        outputs = []
        for log in logs:
            log.seek(0)
            outputs.append(log.read())
        return codes, outputs
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


@pytest.mark.slow(seconds=300)
def test_two_workers_train_to_the_end_fail_loudly_when_one_dies_stop_together_and_resume(tmp_path):
    # The workers read their own shards (13 train images in shards of 3, 3, 3, 3 and 1), and
    # the chief alone evaluates. One step per call: the SIGTERM below must find a step
    # boundary inside the last epoch.
    plan = write_tiny_plan(tmp_path, images=16, epochs1=1, epochs2=1)
    text = plan.read_text().replace("max_boxes = 12\n", "max_boxes = 12\nrecords_per_shard = 3\n")
    text = text.replace("[train]\n", "[train]\nsteps_per_execution = 1\nshard_by = \"file\"\n")
    plan.write_text(text + '\n[evaluation]\nevaluator = "coco_map"\neval_every = 1\nbest_metric = "AP50"\n')
    workdir = tmp_path / "run"
    weights = make_plugin_package(tmp_path / "weights", "weights_plugin", {"weights_plugin": WEIGHTS_PLUGIN})
    killer = make_plugin_package(tmp_path / "killer", "killer", {"killer": kill_at("detplug_epoch_end", "epoch == 1")})

    # Worker 1 dies at the end of epoch 1: the chief must stop with an error, not hang.
    codes, outputs = run_workers(tmp_path, plan, workdir, extra_env=[{}, {"PYTHONPATH": str(killer)}])
    assert codes[1] == -9, outputs[1][-3000:]
    assert codes[0] == 2, outputs[0][-3000:]
    assert "error: worker 0 of 2 processes: the cluster lost a worker and this one stopped too" in outputs[0]
    assert "start every worker again with the same command and TF_CONFIG to resume" in outputs[0]
    saved = json.loads((workdir / "checkpoints" / "state.json").read_text())["epoch"]
    assert saved == 1  # the chief wrote epoch 1 before it waited for its peer
    assert f"is after epoch {saved}" in outputs[0]

    # Started again, the pair resumes; a real SIGTERM reaches worker 1 only, before step 0 of
    # epoch 2. Both workers agree to stop after that step, save there (the chief into the run
    # folder) and exit 143: neither waits forever for the other.
    sigterm = make_plugin_package(tmp_path / "sigterm", "sigterm", {"sigterm": signal_at_step("SIGTERM", 2, 0)})
    codes, outputs = run_workers(tmp_path, plan, workdir, extra_env=[{}, {"PYTHONPATH": str(sigterm)}])
    assert codes == [143, 143], outputs[0][-3000:] + outputs[1][-3000:]
    assert "stopped on SIGTERM after step 1 of 3 in epoch 2" in outputs[1]
    assert "stopped on another worker's stop signal after step 1 of 3 in epoch 2" in outputs[0]
    assert json.loads((workdir / "checkpoints" / "state.json").read_text())["interrupted"]

    # Started again, the pair resumes from the chief's last checkpoint and trains to the end.
    files = [tmp_path / f"weights{index}.npz" for index in range(2)]
    codes, outputs = run_workers(tmp_path, plan, workdir, extra_env=[
        {"PYTHONPATH": str(weights), "TEST_WEIGHTS_FILE": str(files[index])} for index in range(2)])
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    for output in outputs:
        assert f"resuming plan 'tiny' after step 1 of epoch 2 from {workdir / 'checkpoints'}" in output
    assert "strategy 'multi_worker': 2 replicas (2 workers; this one, worker 0" in outputs[0]
    assert json.loads((workdir / "checkpoints" / "state.json").read_text())["epoch"] == 2

    # One worker reads three shards (7 images), the other two (6 images); each takes the 3
    # steps of 2 x 2 images an epoch of the whole split.
    both = outputs[0] + outputs[1]
    assert "reads 3 of the 5 train shards (7 images, 108% of an even share), 3 steps an epoch of 1 x 2" in both
    assert "reads 2 of the 5 train shards (6 images, 92% of an even share), 3 steps an epoch of 1 x 2" in both

    # Only the chief evaluated; the other worker took the chief's AP50 for its epoch line
    # and its choice of the best epoch.
    assert "evaluation on synth's val split: every epoch and after the last (set by [evaluation] eval_every) " \
           "by the chief only\n" in outputs[0]
    assert "by the chief only; this worker takes the chief's AP50 to keep the best checkpoint" in outputs[1]
    assert "coco_map on the val split after epoch 2:" in outputs[0] and "coco_map on the val" not in outputs[1]
    best = json.loads((workdir / "checkpoints" / "state.json").read_text())["best"]
    assert best["metric"] == "AP50" and best["epoch"] in (1, 2)
    worker_line = next(line for line in outputs[1].splitlines() if line.startswith("epoch 2/2: "))
    chief_ap50 = float(next(row for row in outputs[0].splitlines() if row.startswith("all ")).split()[2])
    assert f", AP50 {chief_ap50:.2f}%" in worker_line, worker_line

    # Both workers end with the same weights: each saw other images, and every step's
    # gradients were summed over both.
    first, second = (np.load(path) for path in files)
    assert len(first.files) == len(second.files) > 0
    assert all(np.array_equal(first[name], second[name]) for name in first.files)

    # Only the chief's checkpoints (and its writer lock: only the chief locks the shared folder)
    # are in the run folder; worker 1's temporary folder is gone.
    assert sorted(p.name for p in workdir.iterdir()) == [".writer.lock", "checkpoints", "history.csv",
                                                         "plan.lock.toml", "tb"]
    assert "pid " in (workdir / ".writer.lock").read_text()
    scratch = outputs[1].split("this worker's copies go to ")[1].split()[0]
    assert "detplug-worker1-" in scratch and not Path(scratch).exists()
