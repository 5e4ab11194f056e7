"""The Kimi Linear decode and quality experiments, run at toy sizes: structure, correctness rows, figures."""

import pytest
import torch

from frontier.reproduce import Mode, RunContext, Verdict
from frontier.reproduce.experiments import kimi_linear_decode, kimi_linear_quality


def _ctx(tmp_path) -> RunContext:
    return RunContext(mode=Mode.QUICK, seed=0, out_dir=tmp_path, progress=False)


def test_decode_experiment_at_short_context(tmp_path):
    result = kimi_linear_decode.run(_ctx(tmp_path), contexts=[64, 256], batches=[1, 2], steps=1)
    assert len(result.rows) == 2 * 2 + 2
    assert all(row.verdict in (Verdict.PASS, Verdict.FAIL) for row in result.rows)
    assert result.rows[-1].verdict is Verdict.PASS, result.rows[-1].measured  # logits match transformers
    cache = result.metrics["cache_bytes"]
    assert cache["hybrid/b1/256"] < cache["all-MLA/b1/256"]
    assert cache["hybrid/b2/256"] == 2 * cache["hybrid/b1/256"]
    per_token = result.metrics["cache_bytes_per_token"]
    assert per_token["all-MLA/b2/256"] == cache["all-MLA/b2/256"] / (2 * 256)
    assert set(result.metrics["parameters"]) == {"hybrid", "all-MLA"}
    assert "bytes (transformers' cache" in result.rows[-2].measured and "M parameters" in result.rows[-2].measured
    assert all((tmp_path / figure).stat().st_size > 1000 for figure in result.figures)


def test_synthetic_experiment_runs_every_task_and_mixer(tmp_path):
    result = kimi_linear_quality.run_synthetic(_ctx(tmp_path), steps=2, batch=4, eval_size=8, hidden=32, seeds=[0])
    assert [row.claim.split(":")[0] for row in result.rows] == ["MQAR"] * 3 + ["palindrome"] * 3 + ["stack"] * 2
    for task in ("MQAR", "palindrome", "stack"):
        assert set(result.metrics[task]) == {"KDA", "GDN", "softmax"}
        for by_mixer in result.metrics[task].values():
            (run,) = by_mixer["runs"]
            assert 0 <= run["correct"] <= run["total"] and run["total"] > 0
            assert by_mixer["mean_accuracy"] == run["correct"] / run["total"]
    assert "Wilson" in result.rows[0].source
    assert (tmp_path / result.figures[0]).stat().st_size > 1000


def test_synthetic_experiment_judges_the_mean_over_seeds(tmp_path, monkeypatch):
    # KDA: one seed stuck on a plateau, one solved (mean 55%); GDN 50% twice; softmax mean 60%. Verdicts follow means.
    accuracy = {("KDA", 0): 0.1, ("KDA", 1): 1.0, ("GDN", 0): 0.5, ("GDN", 1): 0.5, ("softmax", 0): 0.3,
                ("softmax", 1): 0.9}  # fmt: skip

    def fake_training(ctx, task, mixer, seed, *args):
        return {"correct": round(100 * accuracy[mixer, seed]), "total": 100, "seconds": 0.0, "final_loss": 1.0,
                "compiled_chunk": False, "losses": [2.0, 1.0]}  # fmt: skip

    monkeypatch.setattr(kimi_linear_quality, "_train_synthetic", fake_training)
    result = kimi_linear_quality.run_synthetic(_ctx(tmp_path), steps=2, batch=4, eval_size=8, hidden=32, seeds=[0, 1])
    assert [row.verdict for row in result.rows[:2]] == [Verdict.PASS, Verdict.FAIL]
    assert "KDA mean 55.0% (seeds: 10.0%, 100.0%)" in result.rows[0].measured
    assert result.metrics["MQAR"]["KDA"]["mean_accuracy"] == pytest.approx(0.55)
    assert [r["seed"] for r in result.metrics["MQAR"]["GDN"]["runs"]] == [0, 1]
    assert len(list((tmp_path / "kimi-linear-synthetic-units").glob("*-seed-1.json"))) == 9


def test_synthetic_experiment_resumes_from_its_trained_models(tmp_path, monkeypatch):
    first = kimi_linear_quality.run_synthetic(_ctx(tmp_path), steps=2, batch=4, eval_size=8, hidden=32, seeds=[0])
    assert len(list((tmp_path / "kimi-linear-synthetic-units").glob("*-seed-0.json"))) == 9

    def no_training(*args, **kwargs):
        raise AssertionError("a stored model was trained again")

    monkeypatch.setattr(kimi_linear_quality, "_train_synthetic", no_training)
    again = kimi_linear_quality.run_synthetic(_ctx(tmp_path), steps=2, batch=4, eval_size=8, hidden=32, seeds=[0])
    assert again.metrics == first.metrics
    with pytest.raises(AssertionError, match="trained again"):  # another length is another model
        kimi_linear_quality.run_synthetic(_ctx(tmp_path), steps=3, batch=4, eval_size=8, hidden=32, seeds=[0])


def test_steps_to_converge_finds_where_the_smoothed_loss_falls_to_a_tenth():
    assert kimi_linear_quality.steps_to_converge([5.0] * 40 + [0.1] * 60) == 42  # window of 2 steps
    assert kimi_linear_quality.steps_to_converge([5.0] * 40 + [0.6] * 60) is None  # above 10% of the start


def test_convergence_row_compares_median_steps_and_counts_stuck_runs_as_slowest():
    solved_at = {10: [5.0] * 10 + [0.1] * 90, 30: [5.0] * 30 + [0.1] * 70, None: [5.0] * 100}

    def row(kda, gdn):
        by_mixer = {"KDA": [{"losses": solved_at[s]} for s in kda], "GDN": [{"losses": solved_at[s]} for s in gdn]}
        return kimi_linear_quality._convergence_row("MQAR", by_mixer, 100)

    faster = row([10, None, 10], [30, 30, 10])
    assert faster.verdict is Verdict.PASS, faster.measured  # median 12 vs 32
    assert "KDA 12 (seeds: 12, never, 12); GDN 32" in faster.measured
    assert faster.source.endswith("median over 3 seeds")
    assert row([None, None, 10], [30, 30, 10]).verdict is Verdict.FAIL  # KDA's median run never converged
    assert row([10, 10, 30], [10, 10, 30]).verdict is Verdict.FAIL  # a tie is not "fewer steps"
    assert row([10, None, None], [None, None, None]).verdict is Verdict.NOT_COMPARABLE  # both medians: never
    stuck = row([None], [None])
    assert stuck.verdict is Verdict.NOT_COMPARABLE and stuck.measured.endswith("KDA never; GDN never")
    assert stuck.source.endswith("one seed")


def test_lm_experiment_matches_parameter_counts(tmp_path):
    result = kimi_linear_quality.run_lm(_ctx(tmp_path), steps=2, batch=2, seq=32, hidden=32, seeds=[0])
    params = [r["params"] for r in result.metrics.values()]
    assert max(params) / min(params) < 1.02
    assert all(len(r["val_loss"]) == 1 and r["val_loss"][0] > 0 for r in result.metrics.values())
    assert len(result.rows) == 2
    assert len(list((tmp_path / "kimi-linear-lm-units").glob("*-seed-0.json"))) == 3  # kept for --resume


def test_pydoc_corpus_is_real_text():
    data = kimi_linear_quality.pydoc_bytes()
    assert len(data) > 400_000 and data.dtype == torch.long
    assert b"for_stmt" in bytes(data[:200_000].tolist()) or b"The for statement" in bytes(data.tolist())


def test_the_full_lm_corpus_holds_out_whole_documents_and_is_read_less_than_once():
    quick_train, quick_validation = kimi_linear_quality.lm_corpus(with_factbook=False)
    train, validation = kimi_linear_quality.lm_corpus(with_factbook=True)
    assert torch.equal(train[: len(quick_train)], quick_train)
    assert torch.equal(validation[: len(quick_validation)], quick_validation)
    assert 0.08 < len(validation) / (len(train) + len(validation)) < 0.12
    full = kimi_linear_quality.FULL_LM_RUN
    passes = full["steps"] * full["batch"] * full["seq"] / len(train)
    assert 0.5 < passes < 1.0  # 2000 steps on the topics alone were 38 passes, and the models memorised them
    held_out = bytes(validation[len(quick_validation) : len(quick_validation) + 2000].tolist()).decode()
    assert held_out.startswith("Introduction > Background:") and held_out[:2000] not in bytes(train.tolist()).decode()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kimi-linear-decode", "kimi-linear-synthetic", "kimi-linear-lm"])
def test_quick_run_through_the_cli(reproduce_quick, name):
    experiment = reproduce_quick(name)
    assert experiment["rows"] and all(row["verdict"] != Verdict.ERROR.value for row in experiment["rows"])
