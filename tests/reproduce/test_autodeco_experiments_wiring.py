"""The four AutoDeco experiments end to end in seconds: a 2-layer random Llama with a character tokenizer stands in
for the embedded SmolLM2, generated problems for BIG-bench, and gold answers for the base's rejection-sampled
solutions (a random model answers nothing right). This checks the wiring (caching, training, evaluation, rows,
figures); the slow tests in test_autodeco_experiments.py run the real model."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

import frontier.autodeco.data as autodeco_data
import frontier.models as models
from frontier.autodeco.data import MakeDataSummary
from frontier.autodeco.problems import Problem, generate_problems
from frontier.io import atomic_write_text
from frontier.reproduce import Mode, RunContext, Verdict
from frontier.reproduce.experiments import autodeco

TINY = replace(
    autodeco.QUICK, train_problems=12, train_samples=1, steps=3, batch_size=4, eval_per_task=2, eval_samples=2,
    temperature_grid=(0.5, 1.0), top_p_grid=(0.9,), overhead_tokens=4, overhead_repeats=1, control_prompts=6,
    control_steps=2, ablation_per_task=1, ablation_steps=2,
)  # fmt: skip


@pytest.fixture
def tiny_world(monkeypatch, tmp_path, tiny_llama, char_tokenizer):
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(autodeco, "QUICK", TINY)
    loads = []

    def load_causal_lm(progress=False):
        loads.append(1)
        return tiny_llama(hidden=32, seed=0), char_tokenizer

    def gold_solutions(model, tokenizer, problems, output, samples_per_problem, **_):
        records = [{"prompt": p.prompt, "completion": f"The answer is {p.answer}."} for p in problems]
        atomic_write_text(output, "".join(json.dumps(r) + "\n" for r in records))
        return MakeDataSummary(problems=len(problems), samples=len(problems) * samples_per_problem, kept=len(records))

    def eval_problems(ctx, per_task):
        pool = generate_problems(per_task * len(autodeco.EVAL_TASKS), seed=ctx.seed + 1, families=("arithmetic",))
        return [
            Problem(p.question, p.answer, task) for p, task in zip(pool, autodeco.EVAL_TASKS * per_task, strict=True)
        ]

    monkeypatch.setattr(models, "load_causal_lm", load_causal_lm)
    monkeypatch.setattr(autodeco_data, "make_data", gold_solutions)
    monkeypatch.setattr(autodeco, "bigbench_problems", eval_problems)
    return RunContext(mode=Mode.QUICK, seed=0, out_dir=tmp_path / "run", progress=False), loads


def test_pass_at_1_and_the_loss_ablation_share_one_set_of_cached_heads(tiny_world):
    ctx, loads = tiny_world
    result = autodeco.pass_at_1(ctx)
    shown = result.metrics["pass_at_1"]
    assert {"greedy", "default T=1 p=1", "MeanShift", "AutoDeco"} <= set(shown)
    assert any(name.startswith("expert T=") for name in shown)
    assert all(0 <= row["value"] <= 100 for row in shown.values())
    assert set(result.metrics["expert_grid"]) >= {"T=0.5,p=1", "T=1,p=1"}
    assert 0 < result.metrics["autodeco_mean_temperature"] < 2 and 0 < result.metrics["autodeco_mean_top_p"] < 1
    assert [row.verdict for row in result.rows][-1] is Verdict.NOT_COMPARABLE  # the NLL row
    assert all(math.isfinite(v["nll"]) for v in result.metrics["held_out_nll"].values())
    assert result.metrics["data"]["train_pairs"] + result.metrics["data"]["held_out_pairs"] == TINY.train_problems
    assert (ctx.out_dir / result.figures[0]).stat().st_size > 1000
    (cached,) = (ctx.out_dir.parent / "cache" / "autodeco-reproduce").iterdir()
    assert (cached / "heads").is_dir()

    ablation = autodeco.loss_ablation(ctx)  # reads the heads cached above instead of training them again
    variants = ablation.metrics["variants"]
    assert set(variants) == set(autodeco.ABLATIONS)
    # a single-head variant decodes with the other head switched off, not at its untrained weights
    assert (
        variants["temperature head only"]["mean_top_p"] == 1.0 != variants["temperature head only"]["mean_temperature"]
    )
    assert variants["top-p head only"]["mean_temperature"] == 1.0 != variants["top-p head only"]["mean_top_p"]
    assert [row.verdict for row in ablation.rows][2:] == [Verdict.NOT_COMPARABLE] * 2
    assert len(loads) == 2


def test_control_reports_consistency_before_and_after_training(tiny_world):
    ctx, _ = tiny_world
    result = autodeco.control(ctx)
    assert len(result.rows) == 4 and all(row.verdict in (Verdict.PASS, Verdict.FAIL) for row in result.rows)
    after = result.metrics["after"]
    assert after["prompts"] == TINY.control_prompts
    assert all(0 <= after[f"{name}_{d}_consistency"] <= 1 for name in ("temperature", "top_p") for d in ("low", "high"))
    assert result.metrics["loss_first"] != result.metrics["loss_last"]


def test_overhead_times_every_variant_at_both_batch_sizes(tiny_world):
    ctx, _ = tiny_world
    result = autodeco.overhead(ctx)
    assert [row.verdict for row in result.rows][-1] is Verdict.PASS  # 512·32 + 2306 head parameters
    assert result.metrics["head_parameters"] == 512 * 32 + 2306
    for batch in ("batch1", "batch8"):
        assert all(len(v["times_s"]) == TINY.overhead_repeats for v in result.metrics[batch].values())
    cost = result.metrics["training_step"]
    assert set(cost) == {"cache_s", "cached_step_s", "streamed_step_s"} and min(cost.values()) > 0
    training_row = next(row for row in result.rows if "cached base features" in row.claim)
    assert training_row.verdict is Verdict.NOT_COMPARABLE and "× cheaper" in training_row.measured
