"""Fixtures that make tiny real plans and data; no mocks of TensorFlow."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_tiny_plan


@pytest.fixture
def tiny_plan(tmp_path: Path) -> Path:
    return write_tiny_plan(tmp_path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (in file order), so the two xdist workers do not end with one of
    them alone on a long test while the other has finished."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
