"""Feed-forward blocks: the dense SwiGLU MLP and a mixture of experts with a sigmoid top-k router and a shared expert.

The MoE follows Kimi Linear / DeepSeek-V3 (Kimi Linear §5.4): sigmoid scores plus a load-balancing correction bias
choose the experts (optionally within the best groups), the chosen scores are renormalised and scaled, and a shared
expert sees every token. Parameter names are those of the released Kimi Linear checkpoints (experts.{i}.w1/w2/w3),
which is also the format transformers writes, so checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SwiGLUMLP(nn.Module):
    """down(silu(gate(x)) ⊙ up(x))."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TopKRouter(nn.Module):
    """Pick `top_k` experts per token; returns (weights [N, top_k], expert indices [N, top_k]).

    Routing runs in float32 (the weight is kept in float32 too) because near-ties between experts flip in bf16.
    """

    def __init__(
        self,
        hidden_size: int,
        num_experts: int,
        top_k: int,
        num_groups: int = 1,
        top_k_groups: int = 1,
        renormalize: bool = True,
        scaling_factor: float = 1.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_experts, hidden_size, dtype=torch.float32))
        # Added to the scores only when choosing experts (auxiliary-loss-free load balancing), not when weighting.
        self.e_score_correction_bias = nn.Buffer(torch.zeros(num_experts, dtype=torch.float32))
        self.num_experts, self.top_k = num_experts, top_k
        self.num_groups, self.top_k_groups = num_groups, top_k_groups
        self.renormalize, self.scaling_factor = renormalize, scaling_factor

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = F.linear(x.float(), self.weight.float()).sigmoid()  # [N, E]
        choice = scores + self.e_score_correction_bias
        if self.num_groups > 1:
            # Keep only the experts of the `top_k_groups` groups whose two best experts score highest.
            grouped = choice.view(-1, self.num_groups, self.num_experts // self.num_groups)
            group_scores = grouped.topk(2, dim=-1).values.sum(-1)  # [N, G]
            best_groups = group_scores.topk(self.top_k_groups, dim=-1).indices
            keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, best_groups, True)
            choice = grouped.masked_fill(~keep[..., None], float("-inf")).view(-1, self.num_experts)
        indices = choice.topk(self.top_k, dim=-1).indices
        weights = scores.gather(1, indices)
        if self.renormalize:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return weights * self.scaling_factor, indices


class Expert(nn.Module):
    """One routed SwiGLU expert; w1 = gate, w3 = up, w2 = down (the released checkpoints' names)."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.w3 = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.w2 = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MoE(nn.Module):
    """Routed experts plus always-on shared experts."""

    def __init__(
        self,
        hidden_size: int,
        expert_intermediate_size: int,
        num_experts: int,
        top_k: int,
        num_shared_experts: int = 1,
        num_groups: int = 1,
        top_k_groups: int = 1,
        renormalize: bool = True,
        scaling_factor: float = 1.0,
    ) -> None:
        super().__init__()
        self.gate = TopKRouter(hidden_size, num_experts, top_k, num_groups, top_k_groups, renormalize, scaling_factor)
        self.experts = nn.ModuleList(Expert(hidden_size, expert_intermediate_size) for _ in range(num_experts))
        self.shared_experts = SwiGLUMLP(hidden_size, expert_intermediate_size * num_shared_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        weights, indices = self.gate(flat)  # [N, top_k] each
        routed = torch.zeros_like(flat)
        for expert in indices.unique().tolist():  # only experts that received tokens do any work
            token, slot = torch.where(indices == expert)
            y = self.experts[expert](flat[token]) * weights[token, slot, None]
            routed.index_add_(0, token, y.to(routed.dtype))
        return routed.view_as(x) + self.shared_experts(x)
