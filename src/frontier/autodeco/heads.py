"""AutoDeco's two heads (arXiv 2510.26697, §2; reference `model/templlm_auto.py`).

For every position, from the final-norm hidden state h (the input of the LM head):
    T̂ = 2 · sigmoid(MLP_T(h))                                   ∈ (0, 2)
    P̂ = sigmoid(MLP_p([h, T̂, max p, entropy, variance, top-5 mass]))   ∈ (0, 1)
where the four statistics describe softmax(logits / T̂). Each MLP is Linear(·→256) → ReLU → Linear(256→1), PyTorch's
default init (so T̂ ≈ 1 and P̂ ≈ 0.5 before training). Module names match the released heads
(`temp_head.mlp.{0,2}`, `top_p_head.mlp.{0,2}`), so their safetensors load as they are.
"""

from __future__ import annotations

import torch
from torch import nn

HEAD_WIDTH = 256
NUM_STATISTICS = 4
TOP_K_MASS = 5


def distribution_statistics(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """[..., 4] statistics of softmax(logits / T): max probability, entropy, variance over the vocabulary, top-5 mass.

    logits [..., V]; temperature [..., 1]. Float32 inside (a bf16 softmax over 49k tokens loses the tail).
    """
    probs = torch.softmax(logits.float() / (temperature.float() + 1e-8), dim=-1)
    entropy = -(probs * torch.log(probs + 1e-8)).sum(-1, keepdim=True)
    top = probs.topk(min(TOP_K_MASS, probs.shape[-1]), dim=-1).values
    return torch.cat(
        [top[..., :1], entropy, probs.var(dim=-1, keepdim=True, unbiased=False), top.sum(-1, keepdim=True)], dim=-1
    )


class _MLPHead(nn.Module):
    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, HEAD_WIDTH), nn.ReLU(), nn.Linear(HEAD_WIDTH, 1))


class TemperatureHead(_MLPHead):
    """h [..., H] → T̂ [..., 1] in (0, 2)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return 2 * torch.sigmoid(self.mlp(hidden))


class TopPHead(_MLPHead):
    """(h [..., H], T̂ [..., 1], logits [..., V]) → P̂ [..., 1] in (0, 1)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size + 1 + NUM_STATISTICS)

    def forward(self, hidden: torch.Tensor, temperature: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        features = torch.cat(
            [hidden, temperature.to(hidden.dtype), distribution_statistics(logits, temperature).to(hidden.dtype)],
            dim=-1,
        )
        return torch.sigmoid(self.mlp(features))


def head_parameter_count(hidden_size: int) -> int:
    """512·H + 2306 (the paper's table): 257·H-ish per head plus the top-p head's five extra inputs."""
    return sum(p.numel() for head in (TemperatureHead(hidden_size), TopPHead(hidden_size)) for p in head.parameters())
