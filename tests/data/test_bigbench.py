"""BIG-bench tasks read from the sdist tarball: extraction on demand, both target formats, clear errors."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile

import pytest

from frontier.data import bigbench
from frontier.errors import ConfigError, FrontierError


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


ARITHMETIC_SCRIPT = """
import json, os, random
random.seed(42)
for name, (x, y) in {"1_digit_addition": (1, 2), "2_digit_addition": (10, random.randint(10, 99))}.items():
    os.mkdir(name)
    with open(os.path.join(name, "task.json"), "w") as f:
        json.dump({"examples": [{"input": f"What is {x} plus {y}?", "target": str(x + y)}]}, f)
"""
COUNTING_SCRIPT = """
import json, random
items = list({f"item{random.randint(0, 10**6)}" for _ in range(5)})  # set order: needs PYTHONHASHSEED
print(json.dumps({"examples": [{"input": " ".join(items), "target": ["five", "5"]}]}))
"""


@pytest.fixture
def fake_generator_sdist(bigbench_generator_sdist):
    """Stand-ins for the two generator scripts."""
    return bigbench_generator_sdist({"arithmetic": ARITHMETIC_SCRIPT, "object_counting": COUNTING_SCRIPT})


def test_generated_tasks_come_from_the_scripts_and_are_cached(fake_generator_sdist):
    examples = bigbench.load_generated_task("arithmetic/1_digit_addition", progress=False)
    assert examples == [bigbench.BigBenchExample("What is 1 plus 2?", ("3",))]
    fake_generator_sdist.unlink()  # every subtask the script wrote is cached now
    assert bigbench.load_generated_task("arithmetic/2_digit_addition", progress=False)[0].input.startswith("What is 10")


def test_unseeded_generators_run_seeded_so_every_process_draws_the_same_task(fake_generator_sdist, monkeypatch):
    first = bigbench.load_generated_task("object_counting", progress=False)
    assert first[0].targets == ("five", "5")
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(fake_generator_sdist.parent / "another-cache"))
    monkeypatch.setenv("PYTHONHASHSEED", "random")
    assert bigbench.load_generated_task("object_counting", progress=False) == first


def test_generated_task_errors_name_the_fix(fake_generator_sdist, bigbench_generator_sdist, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="no generator script for 'navigate'"):
        bigbench.load_generated_task("navigate", progress=False)
    with pytest.raises(ConfigError, match="writes no task 'arithmetic/9_digit_addition'; it writes arithmetic/1_digit"):
        bigbench.load_generated_task("arithmetic/9_digit_addition", progress=False)

    def fails_with(script: str):
        sdist = bigbench_generator_sdist({"object_counting": script})
        with pytest.raises(FrontierError) as error:
            bigbench.load_generated_task("object_counting", progress=False)
        assert not (sdist.parent / "cache" / "bigbench-0.0.1" / "generated").exists()  # nothing half-cached
        return str(error.value)

    assert "pip install inflect==5.3.0" in fails_with("raise ModuleNotFoundError(\"No module named 'inflect'\")")
    assert "wrote no task JSON for 'object_counting'" in fails_with("print('hello')")
    monkeypatch.setattr(bigbench, "GENERATOR_TIMEOUT_S", 1)
    assert "ran past 1 s" in fails_with("import time; time.sleep(30)")
    monkeypatch.setattr(bigbench, "GENERATED_SHA256", {"object_counting": "0" * 64})
    assert "wrote a different 'object_counting' (1 examples)" in fails_with(COUNTING_SCRIPT)
    not_a_tarball = tmp_path / "junk" / bigbench.GENERATOR_SDIST_NAME
    not_a_tarball.parent.mkdir()
    not_a_tarball.write_text("not gzip")
    monkeypatch.setenv(bigbench.GENERATOR_SDIST_ENV, str(not_a_tarball))
    with pytest.raises(ConfigError, match=f"not the bigbench 0.0.1 sdist.*{bigbench.GENERATOR_SDIST_ENV}"):
        bigbench.load_generated_task("object_counting", progress=False)


def test_a_cached_generator_sdist_must_match_pypis_digest(bigbench_generator_sdist, monkeypatch):
    sdist = bigbench_generator_sdist({"object_counting": "print(1)"})
    monkeypatch.delenv(bigbench.GENERATOR_SDIST_ENV)  # as if pip had downloaded it into the cache
    cached = bigbench.bigbench_cache_dir("0.0.1") / bigbench.GENERATOR_SDIST_NAME
    cached.parent.mkdir(parents=True)
    sdist.rename(cached)
    with pytest.raises(FrontierError, match="does not match PyPI's sha256"):
        bigbench.load_generated_task("object_counting", progress=False)


def test_the_real_generator_scripts_write_the_tasks_frontier_evaluates_on(tmp_path, monkeypatch):
    """Runs BIG-bench's own scripts when a run outside the tests cached their sdist in the default cache folder
    (tests never download)."""
    from frontier.models.loading import cache_root

    monkeypatch.delenv("FRONTIER_CACHE_DIR", raising=False)  # the suite points it at a scratch folder
    real = cache_root() / "bigbench-0.0.1" / bigbench.GENERATOR_SDIST_NAME
    if not real.is_file() or importlib.util.find_spec("inflect") is None:
        pytest.skip(f"needs {real} (run `frontier reproduce --only autodeco-pass-at-1` once) and inflect")
    monkeypatch.setenv(bigbench.GENERATOR_SDIST_ENV, str(real))
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(tmp_path))
    for task in bigbench.GENERATED_SHA256:  # each is checked against its recorded digest as it is written
        bigbench.load_generated_task(task, progress=False)
    assert bigbench.load_generated_task("arithmetic/2_digit_addition", False)[0].input == "What is 80 plus 29?"
