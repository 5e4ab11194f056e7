"""The first registered experiment, run for real through the CLI as `make reproduce` runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_reproduce_embedded_model_reports_a_real_answer_and_speed(tmp_path, model_cache_dir):
    frontier = str(Path(sys.executable).parent / "frontier")
    result = subprocess.run(
        [frontier, "reproduce", "--quick", "--only", "embedded-model", "--reports-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "latest" / "results.json").read_text())
    (experiment,) = data["results"]
    metrics = experiment["metrics"]
    assert "Paris" in metrics["answer"]
    assert metrics["tokens_per_s_batch1"] > 0 and metrics["tokens_per_s_batch8"] > 0
    assert (tmp_path / "latest" / experiment["figures"][0]).stat().st_size > 1000
