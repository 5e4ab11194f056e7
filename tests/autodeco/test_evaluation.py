"""Decoding-strategy evaluation: Pass@1 bookkeeping, paired differences, the expert grid and held-out NLL."""

from __future__ import annotations

import json
import math

import pytest
import torch

from frontier.autodeco.evaluation import Strategy, decoding_nll, evaluate_strategies, expert_search, paired_difference
from frontier.autodeco.modeling import AutoDecoForCausalLM
from frontier.autodeco.problems import Problem
from frontier.autodeco.training import Example, cache_features

PROBLEMS = [Problem("What is 2 + 2?", "4", "arithmetic"), Problem("What is 3 + 5?", "8", "arithmetic"),
            Problem("What is 10 - 7?", "3", "arithmetic")]  # fmt: skip


@pytest.fixture(scope="module")
def autodeco(embedded_model):
    torch.manual_seed(0)
    return AutoDecoForCausalLM(embedded_model[0]), embedded_model[1]


def test_pass_at_1_per_problem_and_decoding_parameters(autodeco):
    model, tokenizer = autodeco
    strategies = [Strategy("greedy", 0.0), Strategy("static", 0.7, 0.9), Strategy("autodeco", 1.0, 1.0, autodeco=True)]
    results = evaluate_strategies(model, tokenizer, PROBLEMS, strategies, samples=3, max_new_tokens=8, batch_size=4,
                                  progress=False)  # fmt: skip
    for result in results.values():
        assert len(result.per_problem) == 3 and all(0 <= x <= 1 for x in result.per_problem)
    assert all(x in (0, 1) for x in results["greedy"].per_problem)
    assert results["static"].temperatures == pytest.approx([0.7] * len(results["static"].temperatures))
    temps = torch.tensor(results["autodeco"].temperatures)
    assert ((temps > 0) & (temps < 2)).all() and temps.std() > 0  # per-token, not constant
    zero = paired_difference(results["static"], results["static"])
    assert zero.value == 0 and zero.n == 3


def test_greedy_pass_at_1_matches_plain_greedy_generation(autodeco):
    from frontier.models import SamplingSettings, generate_chat

    model, tokenizer = autodeco
    result = evaluate_strategies(model, tokenizer, PROBLEMS, [Strategy("greedy", 0.0)], max_new_tokens=8,
                                 progress=False)["greedy"]  # fmt: skip
    answers = generate_chat(model.base_model, tokenizer, [p.prompt for p in PROBLEMS], SamplingSettings(8))
    assert result.per_problem == [float(p.is_correct(a)) for p, a in zip(PROBLEMS, answers, strict=True)]


def test_expert_search_tunes_temperature_then_top_p(autodeco):
    model, tokenizer = autodeco
    best, table = expert_search(model, tokenizer, PROBLEMS[:2], [0.3, 1.0], [0.5, 1.0], samples=2, max_new_tokens=6,
                                progress=False)  # fmt: skip
    assert set(table) == {"T=0.3,p=1", "T=1,p=1", f"T={table_best_t(table)},p=0.5"}
    assert sum(best.per_problem) == max(sum(r.per_problem) for r in table.values())


def table_best_t(table) -> str:
    by_t = [r for name, r in table.items() if name.endswith("p=1")]
    return f"{max(by_t, key=lambda r: sum(r.per_problem)).strategy.temperature:g}"


def test_decoding_nll_at_t1_p1_is_the_base_cross_entropy(tiny_llama):
    torch.manual_seed(0)
    model = AutoDecoForCausalLM(tiny_llama())
    ids = torch.randint(3, 128, (12,), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:5] = -100
    features = cache_features(model, [Example(ids, labels)])
    nll = decoding_nll(model, features, [Strategy("default", 1.0), Strategy("sharp", 0.5, 0.5), Strategy("g", 0.0)])
    logits = model.base_model(ids[None]).logits[0, 4:-1]
    expected = torch.nn.functional.cross_entropy(logits, ids[5:]).item()
    assert nll["default"]["nll"] == pytest.approx(expected, rel=1e-4)
    assert nll["default"]["in_nucleus"] == 1.0 and nll["sharp"]["in_nucleus"] <= 1.0
    assert "g" not in nll and not math.isnan(nll["sharp"]["nll"])


def test_expert_search_reuses_known_results(autodeco):
    from frontier.autodeco.evaluation import StrategyResult, static_name

    model, tokenizer = autodeco
    known = StrategyResult(Strategy(static_name(1.0, 1.0), 1.0, 1.0), per_problem=[1.0, 1.0])  # better than any draw
    best, table = expert_search(model, tokenizer, PROBLEMS[:2], [1.0, 0.5], [0.5], known={known.strategy.name: known},
                                samples=1, max_new_tokens=4, progress=False)  # fmt: skip
    assert table["T=1,p=1"] is known and best is known


class Interrupted(Exception):
    """Stands in for a Ctrl-C or a killed process in the middle of an evaluation."""


def test_an_interrupted_evaluation_resumes_after_its_last_finished_batch(autodeco, tmp_path, monkeypatch):
    from frontier.autodeco import evaluation

    model, tokenizer = autodeco
    strategies = [Strategy("static", 0.7, 0.9), Strategy("autodeco", 1.0, 1.0, autodeco=True)]
    kwargs = dict(samples=2, max_new_tokens=6, batch_size=2, seed=3, progress=False)  # one problem per batch
    expected = evaluate_strategies(model, tokenizer, PROBLEMS, strategies, **kwargs)

    real_sample, calls, fail_after = evaluation.sample, [], [2 * len(strategies)]  # interrupt in the third batch

    def counted_sample(*args, **kw):
        calls.append(1)
        if fail_after and len(calls) > fail_after[0]:
            raise Interrupted
        return real_sample(*args, **kw)

    monkeypatch.setattr(evaluation, "sample", counted_sample)
    with pytest.raises(Interrupted):
        evaluate_strategies(model, tokenizer, PROBLEMS, strategies, checkpoint_dir=tmp_path, **kwargs)
    (stored,) = tmp_path.glob("decoding-*.json")
    assert json.loads(stored.read_text())["batches_done"] == 2

    calls.clear()
    fail_after.clear()
    resumed = evaluate_strategies(model, tokenizer, PROBLEMS, strategies, checkpoint_dir=tmp_path, **kwargs)
    assert len(calls) == len(strategies)  # only the third batch was decoded again
    for name, result in expected.items():
        assert resumed[name].per_problem == result.per_problem
        assert resumed[name].temperatures == pytest.approx(result.temperatures)  # depend on every sampled token
        assert resumed[name].top_ps == pytest.approx(result.top_ps)
        assert resumed[name].strategy == result.strategy

    calls.clear()
    evaluate_strategies(model, tokenizer, PROBLEMS, strategies, checkpoint_dir=tmp_path, **kwargs)
    assert not calls  # finished: read back whole
    evaluate_strategies(model, tokenizer, PROBLEMS, strategies, checkpoint_dir=tmp_path, **(kwargs | {"seed": 4}))
    assert len(list(tmp_path.glob("decoding-*.json"))) == 2  # other settings: another evaluation


def test_the_evaluation_fingerprint_follows_the_heads_and_the_prompts(autodeco):
    from frontier.autodeco.evaluation import _fingerprint

    model, tokenizer = autodeco
    torch.manual_seed(1)
    other_heads = AutoDecoForCausalLM(model.base_model)
    strategies = [Strategy("autodeco", 1.0, 1.0, autodeco=True)]

    def fingerprint(m, problems=PROBLEMS):
        return _fingerprint(m, tokenizer, problems, strategies, {})

    assert fingerprint(model) == fingerprint(model)
    assert fingerprint(model) != fingerprint(other_heads)
    assert fingerprint(model) != fingerprint(model, [Problem("What is 2 + 2?", "4", "arithmetic", "date")])
    embedding = model.base_model.get_input_embeddings().weight
    saved = embedding.detach().clone()
    with torch.no_grad():
        embedding[0, 0] += 1.0  # a retrained base at the same path
    try:
        retrained = fingerprint(model)
    finally:
        with torch.no_grad():
            embedding.copy_(saved)
    assert retrained != fingerprint(model)
