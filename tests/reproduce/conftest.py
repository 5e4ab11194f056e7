"""Run one registered experiment through the CLI, as `make reproduce` does, and return its stored record."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def reproduce_quick(tmp_path):
    def run(name: str) -> dict:
        frontier = str(Path(sys.executable).parent / "frontier")
        result = subprocess.run(
            [frontier, "reproduce", "--quick", "--only", name, "--reports-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        (experiment,) = json.loads((tmp_path / "latest" / "results.json").read_text())["results"]
        assert all((tmp_path / "latest" / figure).stat().st_size > 1000 for figure in experiment["figures"])
        return experiment

    return run
