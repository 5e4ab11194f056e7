"""make-data: rejection sampling keeps only correct answers, and an interrupted run resumes to the same file."""

from __future__ import annotations

import json

import pytest
import torch

import frontier.autodeco.data as data_module
from frontier.autodeco.data import make_data
from frontier.autodeco.problems import Problem, generate_problems
from frontier.errors import ConfigError
from frontier.models.sampling import SampledTokens

PROBLEMS = [Problem("What is 2 + 2?", "4", "arithmetic"), *generate_problems(3, seed=5)]
KWARGS = dict(samples_per_problem=2, max_new_tokens=6, batch_size=2, seed=1, progress=False)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_only_correct_distinct_answers_are_kept(embedded_model, tmp_path):
    model, tokenizer = embedded_model
    summary = make_data(model, tokenizer, PROBLEMS, tmp_path / "out.jsonl", **KWARGS)
    kept = _lines(tmp_path / "out.jsonl")
    assert summary.samples == 8 and summary.kept == len(kept) <= 8
    by_prompt = {p.prompt: p for p in PROBLEMS}
    for item in kept:
        assert set(item) == {"prompt", "completion", "answer", "family"}
        assert by_prompt[item["prompt"]].is_correct(item["completion"])
    assert len({(k["prompt"], k["completion"]) for k in kept}) == len(kept)
    assert not (tmp_path / "out.jsonl.partial").exists()


def _interrupt_sampling_at(call: int, monkeypatch) -> list[int]:
    """Make make-data's `call`-th sampling call raise KeyboardInterrupt; returns the list of calls made."""
    real_sample, calls = data_module.sample, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(data_module, "sample", interrupted)
    return calls


def test_interrupted_run_resumes_without_redrawing(embedded_model, tmp_path, monkeypatch):
    model, tokenizer = embedded_model
    make_data(model, tokenizer, PROBLEMS, tmp_path / "straight.jsonl", **KWARGS)
    calls = _interrupt_sampling_at(3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        make_data(model, tokenizer, PROBLEMS, tmp_path / "resumed.jsonl", **KWARGS)
    assert len(_lines(tmp_path / "resumed.jsonl.partial")) == 1 + 4  # settings, two problems × two samples
    calls.clear()
    make_data(model, tokenizer, PROBLEMS, tmp_path / "resumed.jsonl", **KWARGS)
    assert len(calls) == 2  # only the two unfinished problems were sampled again
    assert _lines(tmp_path / "resumed.jsonl") == _lines(tmp_path / "straight.jsonl")


def test_a_resume_with_other_settings_is_refused(embedded_model, tmp_path, monkeypatch):
    model, tokenizer = embedded_model
    real_sample = data_module.sample
    _interrupt_sampling_at(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        make_data(model, tokenizer, PROBLEMS, tmp_path / "out.jsonl", **KWARGS)
    monkeypatch.setattr(data_module, "sample", real_sample)
    with pytest.raises(ConfigError, match=r"other settings \(seed=1; now seed=2\)"):
        make_data(model, tokenizer, PROBLEMS, tmp_path / "out.jsonl", **{**KWARGS, "seed": 2})
    with pytest.raises(ConfigError, match="other problems"):
        make_data(model, tokenizer, PROBLEMS[::-1], tmp_path / "out.jsonl", **KWARGS)


def test_a_sample_cut_off_at_the_token_limit_is_not_kept(embedded_model, tmp_path, monkeypatch):
    model, tokenizer = embedded_model
    eos = tokenizer.eos_token_id
    ended = [*tokenizer("4", add_special_tokens=False).input_ids, eos]
    cut = tokenizer("It is 4", add_special_tokens=False).input_ids
    width = max(len(ended), len(cut))
    rows = [ended + [eos] * (width - len(ended)), cut + [eos] * (width - len(cut))]

    def fixed(model, prefix, params, max_new_tokens, **kwargs):
        return SampledTokens(torch.tensor(rows), torch.ones(2, width), torch.ones(2, width))

    monkeypatch.setattr(data_module, "sample", fixed)
    summary = make_data(model, tokenizer, PROBLEMS[:1], tmp_path / "out.jsonl", **KWARGS)
    assert summary.samples == 2 and [k["completion"] for k in _lines(tmp_path / "out.jsonl")] == ["4"]
