"""Fast checks of the AutoDeco experiments' data plumbing (the experiments themselves are slow tests)."""

from __future__ import annotations

import io
import tarfile

from frontier.data import bigbench
from frontier.reproduce import Mode, RunContext
from frontier.reproduce.experiments import autodeco


def test_bigbench_tasks_become_numeric_problems(tmp_path, monkeypatch):
    # Stand-ins for BIG-bench's two generator scripts: arithmetic writes <subtask>/task.json, counting prints its task.
    subtasks = [task.split("/")[1] for task in autodeco.EVAL_TASKS if task.startswith("arithmetic/")]
    arithmetic = f"""
import json, os
for name in {subtasks!r}:
    os.mkdir(name)
    examples = [{{"input": f"{{name}} question {{i}}?", "target": "-12"}} for i in range(5)]
    with open(os.path.join(name, "task.json"), "w") as f:
        json.dump({{"examples": examples}}, f)
"""
    counting = """
import json
print(json.dumps({"examples": [{"input": f"counting question {i}?", "target": ["three", "3"]} for i in range(5)]}))
"""
    path = tmp_path / bigbench.GENERATOR_SDIST_NAME
    with tarfile.open(path, "w:gz") as archive:
        for family, script in (("arithmetic", arithmetic), ("object_counting", counting)):
            data = script.encode()
            info = tarfile.TarInfo(bigbench.GENERATORS[family].script)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    monkeypatch.setenv(bigbench.GENERATOR_SDIST_ENV, str(path))
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(bigbench, "GENERATED_SHA256", {})  # stand-in tasks, not the real scripts' output
    ctx = RunContext(mode=Mode.QUICK, seed=0, out_dir=tmp_path, progress=False)
    problems = autodeco.bigbench_problems(ctx, per_task=3)
    assert len(problems) == 3 * len(autodeco.EVAL_TASKS)
    assert problems == autodeco.bigbench_problems(ctx, per_task=3)  # the subset is seeded
    counting_problems = [p for p in problems if p.family == "object_counting"]
    assert all(p.answer == "3" and p.is_correct("There are three.") for p in counting_problems)
    assert all(p.answer == "-12" for p in problems if p.family != "object_counting")


def test_held_out_split_is_stable_and_about_one_in_five():
    prompts = [f"What is {i} + {i}?" for i in range(1000)]
    held = [p for p in prompts if autodeco._is_held_out(p)]
    assert held == [p for p in prompts if autodeco._is_held_out(p)]
    assert 150 < len(held) < 250
