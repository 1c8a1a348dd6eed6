"""Fixtures that make tiny real plans and data; no mocks of TensorFlow."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_tiny_plan


@pytest.fixture
def tiny_plan(tmp_path: Path) -> Path:
    return write_tiny_plan(tmp_path)
