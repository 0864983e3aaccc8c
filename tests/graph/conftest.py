"""Fixtures of the graph tests."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def write(tmp_path: Path):
    """Write text to a .prototxt file in a temporary folder and return its path."""
    def _write(text: str, name: str = "net.prototxt") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return _write
