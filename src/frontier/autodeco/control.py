"""Natural-language control of the predicted T̂ and P̂ (paper §3.3, Table 4), and the "targeted training" that the
paper describes but does not release.

A command appended to the prompt ("…more innovative and diverse" / "…as certain as possible") should move the
heads' mean prediction over the answer up or down. Targeted training fine-tunes the heads on prompts carrying these
commands with a margin ranking loss that orders high > none > low for both T̂ and P̂, plus the ordinary AutoDeco
loss on the plain prompt so the heads stay calibrated. Consistency is the share of prompts whose mean prediction
moved in the commanded direction (the paper's definition is implicit; this is our reading).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from frontier.autodeco.loss import AutoDecoLossConfig, autodeco_loss
from frontier.autodeco.modeling import AutoDecoForCausalLM
from frontier.autodeco.training import TrainableHeads, cache_features, encode_examples, head_inputs, heads_accelerator
from frontier.console import progress_steps
from frontier.errors import ConfigError

# The paper's phrasings (§3.3).
HIGH_DIVERSITY = "I hope the answers can be more innovative and diverse."
LOW_DIVERSITY = "I hope the answers can be as certain as possible."
VARIANTS = ("none", "high", "low")


def with_command(prompt: str, variant: str) -> str:
    if variant not in VARIANTS:
        raise ConfigError(f"unknown control variant {variant!r}; use one of {VARIANTS}")
    return {"none": prompt, "high": f"{prompt} {HIGH_DIVERSITY}", "low": f"{prompt} {LOW_DIVERSITY}"}[variant]


@dataclass
class ControlFeatures:
    """Cached base features of the same answers under each prompt variant: variant → [(hidden, labels)]."""

    by_variant: dict[str, list[tuple[torch.Tensor, torch.Tensor]]]


def control_features(model: AutoDecoForCausalLM, tokenizer, pairs: list[dict[str, str]]) -> ControlFeatures:
    """The answer of each {prompt, completion} pair, read after the plain prompt and after each command."""
    by_variant = {}
    for variant in VARIANTS:
        varied = [{"prompt": with_command(p["prompt"], variant), "completion": p["completion"]} for p in pairs]
        by_variant[variant] = cache_features(model, encode_examples(tokenizer, varied))
    return ControlFeatures(by_variant)


def _mean_predictions(heads, lm_head, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean T̂ and P̂ over the positions that predict answer tokens."""
    positions = labels[1:] != -100
    with torch.no_grad():
        logits = lm_head(hidden[:-1][positions].to(lm_head.weight.dtype))
    t_hat, p_hat = heads(hidden[:-1][positions], logits)
    return t_hat.mean(), p_hat.mean()


@torch.no_grad()
def control_effect(model: AutoDecoForCausalLM, features: ControlFeatures) -> dict[str, float]:
    """Mean T̂ / P̂ per variant and consistency: the share of prompts whose mean moved in the commanded direction."""
    lm_head = model.base_model.get_output_embeddings()
    heads = TrainableHeads(model)
    means = {
        variant: torch.tensor([[float(x) for x in _mean_predictions(heads, lm_head, h, y)] for h, y in rows])
        for variant, rows in features.by_variant.items()
    }  # variant → [N, 2] (T̂, P̂)
    none, high, low = means["none"], means["high"], means["low"]
    report = {}
    for index, name in enumerate(("temperature", "top_p")):
        report[f"{name}_none"] = none[:, index].mean().item()
        report[f"{name}_high"] = high[:, index].mean().item()
        report[f"{name}_low"] = low[:, index].mean().item()
        # Counted, then divided in Python: a float32 mean gives 95 of 100 as 0.9499999…, below a 95% bar.
        report[f"{name}_high_consistency"] = int((high[:, index] > none[:, index]).sum()) / len(none)
        report[f"{name}_low_consistency"] = int((low[:, index] < none[:, index]).sum()) / len(none)
    report["prompts"] = len(none)
    return report


def train_control(
    model: AutoDecoForCausalLM,
    features: ControlFeatures,
    steps: int = 100,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    margin: float = 0.05,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Targeted training: margin ranking high > none > low on the mean T̂ and P̂ of each answer, plus the AutoDeco
    loss on the plain prompt. Returns the per-step total loss. Runs through `accelerate` like `train_heads`."""
    if not (model.enable_temperature_head and model.enable_top_p_head):
        raise ConfigError("control training ranks both heads' predictions: switch both heads on")
    count = len(features.by_variant["none"])
    if count == 0 or steps < 1:
        raise ConfigError("targeted training needs at least one example and one step")
    accelerator = heads_accelerator(model)
    heads = TrainableHeads(model)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=learning_rate, weight_decay=0.0)
    heads, optimizer = accelerator.prepare(heads, optimizer)
    lm_head = model.base_model.get_output_embeddings()
    history = []
    with progress_steps("targeted control training", steps, progress) as advance:
        for step in range(steps):
            rng = random.Random(seed * 1_000_003 + step)
            generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for i in rng.sample(range(count), min(batch_size, count)):
                mean = {v: _mean_predictions(heads, lm_head, *features.by_variant[v][i]) for v in VARIANTS}
                ranking = sum(
                    torch.relu(margin - (mean["high"][k] - mean["none"][k]))
                    + torch.relu(margin - (mean["none"][k] - mean["low"][k]))
                    for k in (0, 1)
                )
                hidden, labels = features.by_variant["none"][i]
                hidden, logits = head_inputs(lm_head, hidden[None], accelerator.device)
                t_hat, p_hat = heads(hidden, logits)
                calibration, _ = autodeco_loss(
                    logits, t_hat, p_hat, labels[None].to(accelerator.device), AutoDecoLossConfig(), generator
                )
                loss = (ranking + calibration) / min(batch_size, count)
                accelerator.backward(loss)
                total += loss.item()
            torch.nn.utils.clip_grad_norm_(heads.parameters(), 1.0)
            optimizer.step()
            history.append(total)
            advance()
    return history
