"""Fast checks of the AutoDeco experiments' data plumbing (the experiments themselves are slow tests)."""

from __future__ import annotations

from frontier.reproduce import Mode, RunContext
from frontier.reproduce.experiments import autodeco


def test_bigbench_tasks_become_numeric_problems(tmp_path, bigbench_generator_sdist):
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
    bigbench_generator_sdist({"arithmetic": arithmetic, "object_counting": counting})
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
