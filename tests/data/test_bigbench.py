"""BIG-bench tasks read from the sdist tarball: extraction on demand, both target formats, clear errors."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from frontier.data import bigbench
from frontier.errors import ConfigError


@pytest.fixture
def fake_sdist(tmp_path, monkeypatch):
    """A miniature bigbench-1.0.0.tar.gz with one generative and one multiple-choice task."""
    tasks = {
        "arithmetic/1_digit_addition": {"examples": [{"input": "What is 1 plus 2?", "target": "3"}]},
        "object_counting": {"examples": [{"input": "I have a cat. How many animals?", "target": ["one", "1"]}]},
        "date_understanding": {"examples": [{"input": "Today?", "target_scores": {"01/02/2020": 1, "x": 0}}]},
    }
    path = tmp_path / bigbench.SDIST_NAME
    with tarfile.open(path, "w:gz") as archive:
        for name, content in tasks.items():
            data = json.dumps({"canary": "BIG-BENCH CANARY", **content}).encode()
            info = tarfile.TarInfo(f"{bigbench.TASKS_PREFIX}{name}/task.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    monkeypatch.setenv(bigbench.SDIST_ENV, str(path))
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(tmp_path / "cache"))
    return path


def test_tasks_are_extracted_once_and_parsed(fake_sdist):
    examples = bigbench.load_task("arithmetic/1_digit_addition", progress=False)
    assert examples == [bigbench.BigBenchExample("What is 1 plus 2?", ("3",))]
    assert bigbench.load_task("object_counting", progress=False)[0].targets == ("one", "1")
    assert bigbench.load_task("date_understanding", progress=False)[0].targets == ("01/02/2020",)
    fake_sdist.unlink()  # cached now: the tarball is no longer read
    assert bigbench.load_task("object_counting", progress=False)[0].input.startswith("I have a cat")


def test_unknown_task_and_missing_sdist_are_named(fake_sdist, monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="no BIG-bench task named arithmetic/9_digit_addition"):
        bigbench.load_task("arithmetic/9_digit_addition", progress=False)
    monkeypatch.setenv(bigbench.SDIST_ENV, str(tmp_path / "missing.tar.gz"))
    with pytest.raises(ConfigError, match="no such file"):
        bigbench.load_task("navigate", progress=False)
