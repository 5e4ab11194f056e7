"""Soft nucleus (top-p) filtering for training (AutoDeco, arXiv 2510.26697, §2.1, Eqs. 1-3); the hard one that
sampling uses is `frontier.models.sampling.hard_top_p_mask`.

Hard top-p keeps the smallest set of most likely tokens whose mass reaches p. It is a step function of p, so no
gradient reaches a predicted p through it. The soft version multiplies each token by exp(−α · relu(c − p)), with c the
inclusive cumulative mass of the tokens ranked at or above it: tokens inside the nucleus keep weight 1, tokens
outside fade with their distance from it, and the whole thing is differentiable in p and in the probabilities.
As in the reference code the cumulative sum is inclusive, so a top-1 token heavier than p is faded too (hard top-p
always keeps it); renormalisation gives its mass back when nothing else survives.
"""

from __future__ import annotations

import torch

from frontier.errors import ConfigError

# Paper §6 / reference code: the slope of the fade outside the nucleus.
DEFAULT_STEEPNESS = 30.0
# Added to the normaliser so an (almost) fully faded distribution divides by a positive number.
NORMALISER_EPS = 1e-9


def soft_top_p(probs: torch.Tensor, top_p: torch.Tensor | float, steepness: float = DEFAULT_STEEPNESS) -> torch.Tensor:
    """Differentiable top-p: probs [..., V] (rows sum to 1), top_p [...] or [..., 1] in [0, 1] → probs [..., V].

    Computed in float32 (bf16 cumulative sums drift by more than the fade width) and returned in probs' dtype.
    """
    if steepness <= 0:
        raise ConfigError(f"steepness must be positive, got {steepness}")
    dtype = probs.dtype
    probs = probs.float()
    top_p = torch.as_tensor(top_p, dtype=torch.float32, device=probs.device)
    if top_p.dim() == probs.dim() - 1:
        top_p = top_p.unsqueeze(-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    cumulative = sorted_probs.cumsum(dim=-1)  # inclusive: the token's own mass counts
    sorted_weight = torch.exp(-steepness * torch.relu(cumulative - top_p))
    weight = torch.empty_like(sorted_weight).scatter_(-1, order, sorted_weight)
    kept = probs * weight
    return (kept / (kept.sum(-1, keepdim=True) + NORMALISER_EPS)).to(dtype)
