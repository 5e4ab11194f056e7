"""AutoDeco's training objective (arXiv 2510.26697, §2.1; reference HF/TRL path), every trick a switch.

For each completion token y (labels != −100), with frozen base logits l and the heads' T̂, P̂:
    temperature term  −log softmax(l / T̂)_y
    top-p term        −log soft_top_p(softmax(l / T̂), P̂)_y
Both are weighted by the base's own (detached) probability of y at T = 1 ("dynamic fine-tuning" weighting), and 60%
of the tokens the base already predicts right (argmax = y) are dropped from the temperature term at random, so the
head does not learn "always sharpen". The two means are summed 1 : 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frontier.autodeco.soft_top_p import DEFAULT_STEEPNESS, soft_top_p
from frontier.errors import ConfigError, ShapeError


@dataclass(frozen=True)
class AutoDecoLossConfig:
    train_temperature: bool = True
    train_top_p: bool = True
    dft_weighting: bool = True  # weight each token by the base's detached probability of it
    easy_token_drop: float = 0.6  # share of base-argmax-correct tokens dropped from the temperature term
    steepness: float = DEFAULT_STEEPNESS

    def __post_init__(self) -> None:
        if not (self.train_temperature or self.train_top_p):
            raise ConfigError("train at least one head: train_temperature or train_top_p must be True")
        if not 0 <= self.easy_token_drop < 1:
            raise ConfigError(f"easy_token_drop must be in [0, 1), got {self.easy_token_drop}")


def autodeco_loss(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    labels: torch.Tensor,
    config: AutoDecoLossConfig = AutoDecoLossConfig(),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss and its parts. logits [B, T, V] (frozen base); temperature, top_p [B, T, 1]; labels [B, T] (−100 = skip).

    Position t predicts labels[:, t + 1] (Hugging Face convention: labels are the input ids with prompts masked).
    """
    if logits.shape[:2] != labels.shape or temperature.shape[:2] != labels.shape or top_p.shape[:2] != labels.shape:
        raise ShapeError(
            f"logits {list(logits.shape)}, temperature {list(temperature.shape)}, top_p {list(top_p.shape)} and "
            f"labels {list(labels.shape)} must share [B, T]"
        )
    logits = logits[:, :-1].float().detach()
    target = labels[:, 1:]
    valid = target != -100
    if not valid.any():
        raise ShapeError("labels hold no token to learn from (all −100)")
    logits, target = logits[valid], target[valid]  # [N, V], [N]
    t_hat, p_hat = temperature[:, :-1][valid].float(), top_p[:, :-1][valid].float()  # [N, 1]

    base_log_probs = torch.log_softmax(logits, -1)
    weight = base_log_probs.gather(-1, target[:, None]).squeeze(-1).exp() if config.dft_weighting else None
    scaled = torch.log_softmax(logits / t_hat.clamp(min=1e-2), -1)
    # Training the top-p head alone must leave the temperature head as it is, though the top-p term reads T̂.
    scaled_for_top_p = scaled if config.train_temperature else scaled.detach()
    parts: dict[str, torch.Tensor] = {}
    if config.train_temperature:
        nll = -scaled.gather(-1, target[:, None]).squeeze(-1)
        keep = torch.ones_like(nll, dtype=torch.bool)
        if config.easy_token_drop > 0:
            easy = logits.argmax(-1) == target
            # Drawn where the generator lives (a CPU generator cannot fill CUDA tensors), so the drop is the same
            # on every device.
            draw_device = generator.device if generator is not None else nll.device
            draws = torch.rand(nll.shape, generator=generator, device=draw_device).to(nll.device)
            drop = draws < config.easy_token_drop
            keep = ~(easy & drop)
        nll = nll * weight if weight is not None else nll
        parts["temperature"] = nll[keep].mean() if keep.any() else nll.sum() * 0
    if config.train_top_p:
        filtered = soft_top_p(scaled_for_top_p.exp(), p_hat.squeeze(-1), config.steepness)
        nll = -(filtered.gather(-1, target[:, None]).squeeze(-1) + 1e-9).log()
        parts["top_p"] = (nll * weight if weight is not None else nll).mean()
    total = sum(parts.values())
    return total, {name: value.item() for name, value in parts.items()}
