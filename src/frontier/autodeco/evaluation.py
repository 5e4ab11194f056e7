"""Evaluating decoding strategies as the paper does (§3, App. 8), plus the SimpleDeco "MeanShift" baseline.

Pass@1 is the share of correct answers among N samples per problem, averaged over problems, with a 95% interval
over problems; two strategies are compared by the interval of their per-problem differences (paired, so the
problems' difficulty cancels out). Every strategy of a batch of problems continues from one shared prefill.
Long evaluations keep their progress in a checkpoint folder after every batch of problems and resume from it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from frontier.autodeco.modeling import AutoDecoForCausalLM
from frontier.autodeco.problems import Problem
from frontier.console import progress_steps
from frontier.errors import ConfigError
from frontier.io import atomic_write_text
from frontier.models.generation import chat_inputs
from frontier.models.sampling import hard_top_p_mask, prefill, sample, static_params
from frontier.reproduce.registry import Measurement
from frontier.stats import mean_ci
from frontier.stats import paired_difference as paired_interval


@dataclass(frozen=True)
class Strategy:
    """How to decode. temperature 0 = greedy (one sample per problem); autodeco=True multiplies the heads' T̂, P̂."""

    name: str
    temperature: float
    top_p: float = 1.0
    autodeco: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class StrategyResult:
    strategy: Strategy
    per_problem: list[float] = field(default_factory=list)  # share of correct samples, one value per problem
    temperatures: list[float] = field(default_factory=list)  # T of every generated token (before EOS)
    top_ps: list[float] = field(default_factory=list)

    @property
    def pass_at_1(self) -> Measurement:
        mean, low, high = mean_ci(self.per_problem)
        # A t-interval over a few 0/1-heavy values can leave [0, 1]; a share cannot.
        return Measurement(100 * mean, "%", 100 * max(low, 0.0), 100 * min(high, 1.0), n=len(self.per_problem))

    @property
    def mean_temperature(self) -> float:
        return sum(self.temperatures) / len(self.temperatures) if self.temperatures else math.nan

    @property
    def mean_top_p(self) -> float:
        return sum(self.top_ps) / len(self.top_ps) if self.top_ps else math.nan


def paired_difference(a: StrategyResult, b: StrategyResult) -> Measurement:
    """Pass@1(a) − Pass@1(b) in points, with a 95% interval over the per-problem differences."""
    mean, low, high = paired_interval(a.per_problem, b.per_problem)
    return Measurement(100 * mean, "points", 100 * low, 100 * high, n=len(a.per_problem))


def evaluate_strategies(
    model: AutoDecoForCausalLM,
    tokenizer,
    problems: list[Problem],
    strategies: list[Strategy],
    samples: int = 8,
    max_new_tokens: int = 32,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = True,
    checkpoint_dir: Path | None = None,
) -> dict[str, StrategyResult]:
    """Pass@1 of each strategy on the problems (greedy strategies draw one sample, the others `samples`).

    With `checkpoint_dir`, the results so far are written there after every batch of problems, under a name that
    fingerprints everything that shapes them (see `_fingerprint`); a later call with the same inputs continues after
    the last finished batch and returns what an uninterrupted call would have.
    """
    if samples < 1 or not problems or not strategies:
        raise ConfigError("need at least one problem, one strategy and samples >= 1")
    results = {s.name: StrategyResult(s) for s in strategies}
    per_batch = max(1, batch_size // samples)
    batches = [problems[i : i + per_batch] for i in range(0, len(problems), per_batch)]
    settings = {"samples": samples, "max_new_tokens": max_new_tokens, "batch_size": batch_size, "seed": seed}
    checkpoint = None
    finished = 0
    if checkpoint_dir is not None:
        checkpoint = (
            Path(checkpoint_dir) / f"decoding-{_fingerprint(model, tokenizer, problems, strategies, settings)}.json"
        )
        if checkpoint.is_file():
            stored = json.loads(checkpoint.read_text())
            finished = stored["batches_done"]
            results = {s.name: StrategyResult(s, **stored["results"][s.name]) for s in strategies}
    todo = len(batches) - finished
    with progress_steps("evaluating decoding strategies", todo * len(strategies), progress) as advance:
        for number, batch in enumerate(batches[finished:], start=finished):
            inputs = chat_inputs(tokenizer, [p.prompt for p in batch])
            start = prefill(model.base_model, inputs["input_ids"], inputs["attention_mask"])
            for index, strategy in enumerate(strategies):
                n = 1 if strategy.greedy else samples
                params = (
                    model.decoding_params(strategy.temperature or 1.0, strategy.top_p)
                    if strategy.autodeco
                    else static_params(strategy.temperature, strategy.top_p)
                )
                generator = torch.Generator(device=model.base_model.device)
                generator.manual_seed((seed * 1009 + number) * 1009 + index)
                out = sample(model.base_model, start.repeat(n), params, max_new_tokens, greedy=strategy.greedy,
                             eos_token_id=tokenizer.eos_token_id, generator=generator)  # fmt: skip
                texts = tokenizer.batch_decode(out.tokens, skip_special_tokens=True)
                result = results[strategy.name]
                for i, problem in enumerate(batch):
                    result.per_problem.append(sum(problem.is_correct(t) for t in texts[i * n : (i + 1) * n]) / n)
                generated = ~out.temperatures.isnan()
                result.temperatures += out.temperatures[generated].tolist()
                result.top_ps += out.top_ps[generated].tolist()
                advance()
            if checkpoint is not None:
                kept = {name: {k: v for k, v in asdict(r).items() if k != "strategy"} for name, r in results.items()}
                state = {"batches_done": number + 1, "settings": settings, "results": kept}
                atomic_write_text(checkpoint, json.dumps(state))  # one line: every token's T and p add up
    return results


CHECKPOINT_FORMAT = 1  # bump when what a checkpoint holds, or how results are computed, changes


def _fingerprint(
    model: AutoDecoForCausalLM, tokenizer, problems: list[Problem], strategies: list[Strategy], settings: dict
) -> str:
    """A short digest of everything that shapes an evaluation's results: the base (its config, and each weight's
    shape, dtype and sums, which any retraining or dtype change moves, not where it was loaded from), the heads'
    exact weights and which of them are switched on, the chat template, the prompts as the model sees them, the
    strategies and the settings."""
    base = model.base_model
    config = {k: v for k, v in base.config.to_dict().items() if k != "_name_or_path"}
    weights = [
        [name, str(p.dtype), list(p.shape), p.detach().double().sum().item(), p.detach().double().abs().sum().item()]
        for name, p in base.named_parameters()
    ]
    inputs = {
        "format": CHECKPOINT_FORMAT, "base_config": config, "base_weights": weights,
        "chat_template": getattr(tokenizer, "chat_template", None), "eos": tokenizer.eos_token_id,
        "problems": [[p.prompt, p.answer, p.family, p.kind] for p in problems],
        "strategies": [asdict(s) for s in strategies], "settings": settings,
        "heads_enabled": [model.enable_temperature_head, model.enable_top_p_head],
    }  # fmt: skip
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode())
    for tensor in model.head_parameters():
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def static_name(temperature: float, top_p: float) -> str:
    """The name `expert_search` gives a static strategy, e.g. "T=0.7,p=1" (pass such results as `known`)."""
    return f"T={temperature:g},p={top_p:g}"


def expert_search(
    model: AutoDecoForCausalLM,
    tokenizer,
    problems: list[Problem],
    temperature_grid: list[float],
    top_p_grid: list[float],
    known: dict[str, StrategyResult] | None = None,
    **kwargs,
) -> tuple[StrategyResult, dict[str, StrategyResult]]:
    """The paper's "expert-guided" oracle, tuned on the test problems: the best T at p = 1, then the best p there.

    `known` holds results already measured on the same problems, by `static_name`; they are reused, not redrawn.
    """
    table = dict(known or {})

    def measure(settings: list[tuple[float, float]]) -> list[StrategyResult]:
        todo = [Strategy(static_name(t, p), t, p) for t, p in settings if static_name(t, p) not in table]
        if todo:
            table.update(evaluate_strategies(model, tokenizer, problems, todo, **kwargs))
        return [table[static_name(t, p)] for t, p in settings]

    best_t = max(measure([(t, 1.0) for t in temperature_grid]), key=lambda r: sum(r.per_problem))
    candidates = [best_t, *measure([(best_t.strategy.temperature, p) for p in top_p_grid if p < 1])]
    best = max(candidates, key=lambda r: sum(r.per_problem))
    searched = {static_name(t, 1.0) for t in temperature_grid}
    searched |= {static_name(best_t.strategy.temperature, p) for p in top_p_grid}
    return best, {name: result for name, result in table.items() if name in searched}


@torch.no_grad()
def decoding_nll(
    model: AutoDecoForCausalLM, features: list[tuple[torch.Tensor, torch.Tensor]], strategies: list[Strategy]
) -> dict[str, dict[str, float]]:
    """Held-out gold-token NLL of each strategy's temperature-scaled distribution, and the share of gold tokens its
    hard top-p nucleus keeps (the nucleus alone gives excluded tokens probability 0, an infinite NLL).

    features: (final hidden states [T, H], labels [T]) per held-out example, as `cache_features` returns them.
    """
    lm_head = model.base_model.get_output_embeddings()
    totals = {s.name: {"nll": 0.0, "in_nucleus": 0.0} for s in strategies if not s.greedy}
    count = 0
    for hidden, labels in features:  # cached on the CPU; the LM head and the heads may be on a GPU
        hidden, labels = hidden.to(lm_head.weight.device), labels.to(lm_head.weight.device)
        logits = lm_head(hidden.to(lm_head.weight.dtype)).float()[:-1]
        target = labels[1:]
        valid = target != -100
        logits, target = logits[valid], target[valid]
        t_hat, p_hat = model.heads(hidden[:-1][valid], logits)
        count += len(target)
        for strategy in strategies:
            if strategy.greedy:
                continue
            if strategy.autodeco:
                t = t_hat.squeeze(-1) * strategy.temperature
                p = (p_hat.squeeze(-1) * strategy.top_p).clamp(max=1.0)
            else:
                t = torch.full_like(target, strategy.temperature, dtype=torch.float)
                p = torch.full_like(target, strategy.top_p, dtype=torch.float)
            log_probs = torch.log_softmax(logits / t[:, None], -1)
            totals[strategy.name]["nll"] -= log_probs.gather(-1, target[:, None]).sum().item()
            kept = hard_top_p_mask(log_probs.exp(), p).gather(-1, target[:, None])
            totals[strategy.name]["in_nucleus"] += kept.sum().item()
    if count == 0:
        raise ConfigError("the held-out features hold no completion tokens")
    return {name: {key: value / count for key, value in row.items()} for name, row in totals.items()}
