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


def test_training_experiment_never_trains_on_an_answer_of_either_held_out_set():
    import dataclasses

    from frontier.reproduce import load_experiments
    from frontier.reproduce.experiments import research_training
    from frontier.research.backends import ToolSettings, build_tools
    from frontier.research.evalset import DEFAULT_EVAL_SET, read_eval_set
    from frontier.research.index import factbook_index
    from frontier.research.knowledge import normalize_name
    from frontier.research.tools import GoalLinesExtractor

    assert "research-training" in load_experiments().names()
    scale = dataclasses.replace(
        research_training.QUICK, train_questions=200, synthesized_questions=80, eval_questions=10, loss_questions=2
    )
    index = factbook_index()
    tools = build_tools(index, GoalLinesExtractor(), ToolSettings(top_k=3, python=False))

    synthesized_train, held_out = research_training.question_sets(scale, 0, index)
    train, texts, held_out_trajectories = research_training.training_data(scale, 0, tools, held_out, synthesized_train)

    shipped = read_eval_set(DEFAULT_EVAL_SET)
    synthesized = held_out[research_training.SYNTHESIZED]
    assert held_out[research_training.SHIPPED] == shipped[:10] and len(held_out_trajectories) <= 2
    assert len(synthesized) == 10 and all(q.split == "test" and q.id.startswith("walk-") for q in synthesized)
    assert synthesized_train and all(q.split == "train" for q in synthesized_train)
    from_synthesis = [q for q, _ in train if q.id.startswith("walk-")]
    assert from_synthesis and {q.id for q in from_synthesis} <= {q.id for q in synthesized_train}
    assert 50 <= len(train) - len(from_synthesis) <= 200 and len(texts) >= len(train)
    held_out_answers = {normalize_name(a) for q in shipped + synthesized for a in (q.answer, *q.aliases)}
    assert not {normalize_name(q.answer) for q, _ in train} & held_out_answers
    on_paths = {normalize_name(x) for q, _ in train for s, _, o in q.path for x in (s, o) if not str(x).isdigit()}
    assert not on_paths & held_out_answers  # not even as a step on the way
    last_turns = [t["messages"][-1] for _, t in train]
    assert all(turn["role"] == "assistant" and "<answer>" in turn["content"] for turn in last_turns)
