"""Fast checks of the AutoDeco experiments' data plumbing (the experiments themselves are slow tests)."""

from __future__ import annotations

import io
import json
import tarfile

from frontier.data import bigbench
from frontier.reproduce import Mode, RunContext
from frontier.reproduce.experiments import autodeco


def test_bigbench_tasks_become_numeric_problems(tmp_path, monkeypatch):
    path = tmp_path / bigbench.SDIST_NAME
    with tarfile.open(path, "w:gz") as archive:
        for task in autodeco.EVAL_TASKS:
            target = ["three", "3"] if task == "object_counting" else "-12"
            examples = [{"input": f"{task} question {i}?", "target": target} for i in range(5)]
            data = json.dumps({"examples": examples}).encode()
            info = tarfile.TarInfo(f"{bigbench.TASKS_PREFIX}{task}/task.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    monkeypatch.setenv(bigbench.SDIST_ENV, str(path))
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(tmp_path / "cache"))
    ctx = RunContext(mode=Mode.QUICK, seed=0, out_dir=tmp_path, progress=False)
    problems = autodeco.bigbench_problems(ctx, per_task=3)
    assert len(problems) == 3 * len(autodeco.EVAL_TASKS)
    assert problems == autodeco.bigbench_problems(ctx, per_task=3)  # the subset is seeded
    counting = [p for p in problems if p.family == "object_counting"]
    assert all(p.answer == "3" and p.is_correct("There are three.") for p in counting)
    assert all(p.answer == "-12" for p in problems if p.family != "object_counting")


def test_held_out_split_is_stable_and_about_one_in_five():
    prompts = [f"What is {i} + {i}?" for i in range(1000)]
    held = [p for p in prompts if autodeco._is_held_out(p)]
    assert held == [p for p in prompts if autodeco._is_held_out(p)]
    assert 150 < len(held) < 250
