"""The research retrieval experiment end to end (seconds); the accuracy experiment runs SmolLM2 for minutes and is
covered piece by piece in tests/research."""

from __future__ import annotations

from frontier.reproduce import Mode, RunContext, Verdict
from frontier.reproduce.experiments import research


def test_retrieval_experiment_measures_build_latency_and_recall(tmp_path):
    result = research.retrieval(RunContext(mode=Mode.QUICK, seed=0, out_dir=tmp_path, progress=False))
    build, latency, recall = result.rows
    assert recall.verdict is Verdict.NOT_COMPARABLE and "all of them in the top 10" in recall.measured
    assert build.verdict in (Verdict.PASS, Verdict.FAIL) and "256 documents" in build.measured
    assert latency.verdict in (Verdict.PASS, Verdict.FAIL) and "p50" in latency.measured
    metrics = result.metrics
    assert metrics["index"]["documents"] == 256 and metrics["latency_ms"]["p50"] > 0
    any_at = metrics["recall_any_support"]
    assert 0 <= any_at["1"] <= any_at["5"] <= any_at["10"] <= 1
    assert metrics["recall_all_support_at_10"] <= any_at["10"]


def test_retrieval_queries_mix_questions_and_keywords():
    queries = research.retrieval_queries()
    assert len(queries) > 400 and any(q.startswith("capital of ") for q in queries)
