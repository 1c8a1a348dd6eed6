"""Fixtures that make tiny real plans and data; no mocks of TensorFlow."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_tiny_plan


@pytest.fixture
def tiny_plan(tmp_path: Path) -> Path:
    return write_tiny_plan(tmp_path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, the longest (``@pytest.mark.slow(seconds=N)``, measured on a 2-core
    machine) before the others, so the two xdist workers do not end with one of them alone
    on a long test while the other has finished."""

    def expected_seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return 0.0 if marker is None else float(marker.kwargs.get("seconds", 10))

    items.sort(key=expected_seconds, reverse=True)
