"""How long a user waits before detplug answers, next to the cost of importing TensorFlow.

    python benchmarks/startup.py [--repeat 5]

Each figure is the median wall time of fresh processes, all measured in this
one run, so the ratios hold on a noisy machine. Goal (issue 3): ``--list``
costs under a fifth of ``import tensorflow``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

STATIC_CHECK = (
    "from detplug.registry import Registry\n"
    "from detplug.core.plan.plan_file import find_plan, load_plan, resolve_components\n"
    "from detplug.core.plan.check import static_check\n"
    "plan = load_plan(find_plan('kitti_simple'))\n"
    "static_check(plan, resolve_components(plan, Registry.discover()))\n"
)

COMMANDS = {
    "list_s": [sys.executable, str(REPO / "run.py"), "--list"],
    "static_check_s": [sys.executable, "-c", STATIC_CHECK],
    "import_tf_s": [sys.executable, "-c", "import tensorflow"],
}


def wall_time(command: list[str]) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def measure_startup(repeat: int = 5) -> dict[str, float]:
    """Median seconds per command; the runs are interleaved so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeat):
        for name, command in COMMANDS.items():
            samples[name].append(wall_time(command))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    times = measure_startup(parser.parse_args().repeat)
    base = times["import_tf_s"]
    print(f"{'what':<28} {'seconds':>8} {'x import tensorflow':>20}")
    for name, label in (("list_s", "run.py --list"), ("static_check_s", "static check (kitti_simple)"),
                        ("import_tf_s", "import tensorflow")):
        print(f"{label:<28} {times[name]:>8.3f} {times[name] / base:>20.3f}")
    print(f"goal: --list under 0.2x import tensorflow: {'met' if times['list_s'] < 0.2 * base else 'MISSED'}")


if __name__ == "__main__":
    main()
