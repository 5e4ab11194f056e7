"""The Kimi Delta Attention layer (Kimi Linear §4, Eq. 10).

    q, k = L2Norm(SiLU(ShortConv(W_q x))), L2Norm(SiLU(ShortConv(W_k x)));  v = SiLU(ShortConv(W_v x))
    g = log α = −exp(A_log) · softplus(W↑_f W↓_f x + dt_bias)    (or fla's lower-bounded sigmoid form)
    β = sigmoid(W_β x)
    o = W_o( RMSNorm(KDA(q, k, v, g, β)) ⊙ sigmoid(W↑_g W↓_g x) )     per head

The layer's whole memory of the past is a `KDAState`: the last `conv_size − 1` projected inputs of the short
convolution and the [B, HV, K, V] recurrent state, both of fixed size however long the context. Parameter names
match transformers' `KimiLinearDeltaAttention` (one depthwise conv over the concatenated q, k, v channels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from frontier.errors import ConfigError
from frontier.kda import chunk_kda, fused_recurrent_kda, kda_gate
from frontier.layers.norm import GatedRMSNorm

# Prompts up to this many tokens continue a cached state token by token; longer ones use the chunked kernel.
RECURRENT_MAX_TOKENS = 1


@dataclass
class KDAState:
    """What a KDA layer carries between calls: conv window [B, C, W−1] and recurrent state [B, HV, K, V] (fp32)."""

    conv: torch.Tensor | None = None
    recurrent: torch.Tensor | None = None

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.conv, self.recurrent) if t is not None]

    def select(self, index: torch.Tensor) -> None:
        """Keep the batch rows in `index` (beam search reordering); `index` may live on another device."""
        self.conv = None if self.conv is None else self.conv.index_select(0, index.to(self.conv.device))
        if self.recurrent is not None:
            self.recurrent = self.recurrent.index_select(0, index.to(self.recurrent.device))


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(Σx² + eps) in float32 (fla's form, + eps rather than max(‖x‖, eps) as F.normalize)."""
    x = x.float()
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps)


def depthwise_causal_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`F.conv1d(x, weight[:, None], groups=C)` for a short kernel, as W shifted multiply-adds: x [B, C, T + W − 1]
    (already left-padded), weight [C, W] → [B, C, T]. On a CPU its forward+backward takes half the time of the
    depthwise conv's (whose backward dominated a KDA layer's training step)."""
    length = x.shape[-1] - weight.shape[-1] + 1
    out = x[..., :length] * weight[:, :1]
    for shift in range(1, weight.shape[-1]):
        out = out + x[..., shift : shift + length] * weight[:, shift : shift + 1]
    return out


class KimiDeltaAttention(nn.Module):
    """KDA token mixer with short convolutions, channel-wise gate, delta rule and gated output norm.

    Args:
        hidden_size: model width.
        num_heads: query/key heads H.
        head_dim: K = V, the per-head key and value width.
        num_v_heads: value heads HV (a multiple of H; defaults to H).
        conv_size: short convolution kernel (4 in the paper).
        norm_eps: epsilon of the output RMSNorm.
        gate_lower_bound: None for the softplus gate (released checkpoints), or e.g. −5.0 for the bounded gate.
        chunk_size: chunk length used by `chunk_kda`.
        decay_per_channel: True for KDA's channel-wise forget gate; False gives Gated DeltaNet (one decay per head,
            shared by its K channels), the paper's GDN baseline through the same code path.
        compiled_chunk: while gradients are on, run `chunk_kda`'s PyTorch path with its parallel stages under
            torch.compile (`frontier.kda.compiled_chunk_kda`): faster fixed-length training on a CPU; needs a C++
            compiler. Inference stays eager, as prompt lengths vary and each new shape would compile.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        head_dim: int,
        num_v_heads: int | None = None,
        conv_size: int = 4,
        norm_eps: float = 1e-5,
        gate_lower_bound: float | None = None,
        chunk_size: int = 64,
        decay_per_channel: bool = True,
        compiled_chunk: bool = False,
    ) -> None:
        super().__init__()
        num_v_heads = num_v_heads or num_heads
        if num_v_heads % num_heads:
            raise ConfigError(f"num_v_heads={num_v_heads} must be a multiple of num_heads={num_heads}")
        if conv_size < 1:
            raise ConfigError(f"conv_size must be >= 1, got {conv_size}")
        self.num_heads, self.num_v_heads, self.head_dim = num_heads, num_v_heads, head_dim
        self.conv_size, self.chunk_size, self.compiled_chunk = conv_size, chunk_size, compiled_chunk
        self.key_dim, self.value_dim = num_heads * head_dim, num_v_heads * head_dim
        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        # Depthwise short convolutions; causality comes from left padding in forward, where the three run as one.
        self.q_conv1d = nn.Conv1d(self.key_dim, self.key_dim, conv_size, groups=self.key_dim, bias=False)
        self.k_conv1d = nn.Conv1d(self.key_dim, self.key_dim, conv_size, groups=self.key_dim, bias=False)
        self.v_conv1d = nn.Conv1d(self.value_dim, self.value_dim, conv_size, groups=self.value_dim, bias=False)
        # Low-rank channel-wise forget gate: hidden → head_dim (rank = head_dim, as the paper) → HV·K.
        self.gate_lower_bound = gate_lower_bound
        self.gate_width = head_dim if decay_per_channel else 1
        self.f_a_proj = nn.Linear(hidden_size, head_dim, bias=False)
        self.f_b_proj = nn.Linear(head_dim, self.num_v_heads * self.gate_width, bias=False)
        self.dt_bias = nn.Parameter(torch.empty(num_v_heads * self.gate_width, dtype=torch.float32))
        self.A_log = nn.Parameter(torch.empty(1, 1, num_v_heads, 1))
        self.reset_gate_parameters()
        self.b_proj = nn.Linear(hidden_size, num_v_heads, bias=False)
        self.g_a_proj = nn.Linear(hidden_size, head_dim, bias=False)
        self.g_b_proj = nn.Linear(head_dim, self.value_dim, bias=False)
        self.o_norm = GatedRMSNorm(head_dim, eps=norm_eps)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)

    def reset_gate_parameters(self) -> None:
        """fla's init: A = U(1, 16); dt log-uniform in [1e-3, 0.1] and dt_bias its inverse softplus."""
        with torch.no_grad():
            self.A_log.copy_(torch.empty_like(self.A_log).uniform_(1, 16).log())
            dt = torch.empty_like(self.dt_bias).uniform_(math.log(1e-3), math.log(1e-1)).exp().clamp_min(1e-4)
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def _short_conv(self, x: torch.Tensor, state: KDAState | None) -> torch.Tensor:
        """Causal depthwise conv + SiLU over x [B, C, T], continuing from (and updating) the cached window."""
        window = self.conv_size - 1
        if state is not None and state.conv is not None:
            x = torch.cat([state.conv.to(x.dtype), x], dim=-1)
        else:
            x = F.pad(x, (window, 0))
        if state is not None:
            state.conv = x[..., x.shape[-1] - window :].detach() if window else x[..., :0]
        weight = torch.cat([self.q_conv1d.weight, self.k_conv1d.weight, self.v_conv1d.weight])  # [C, 1, W]
        if x.shape[-1] == self.conv_size:  # one decode step: one dot product per channel, fewer ops than W shifts
            return F.silu((x * weight[:, 0]).sum(-1, keepdim=True))
        return F.silu(depthwise_causal_conv(x, weight[:, 0]))

    def forward(
        self,
        hidden_states: torch.Tensor,
        state: KDAState | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden_states [B, T, hidden] → [B, T, hidden]; `state` (if given) is read and updated in place.

        padding_mask [B, T] (1 = token, 0 = padding): padded positions are zeroed before the projections, so their
        keys are 0 and they write nothing into the state (left-padded batches decode exactly like single rows).
        """
        if padding_mask is not None:
            hidden_states = hidden_states * padding_mask[..., None].to(hidden_states.dtype)
        B, T, _ = hidden_states.shape
        qkv = torch.cat(
            [self.q_proj(hidden_states), self.k_proj(hidden_states), self.v_proj(hidden_states)], dim=-1
        ).transpose(1, 2)
        q, k, v = self._short_conv(qkv, state).transpose(1, 2).split([self.key_dim, self.key_dim, self.value_dim], -1)
        q = l2_normalize(q.unflatten(-1, (self.num_heads, self.head_dim)))
        k = l2_normalize(k.unflatten(-1, (self.num_heads, self.head_dim)))
        v = v.unflatten(-1, (self.num_v_heads, self.head_dim)).float()
        gate_pre = self.f_b_proj(self.f_a_proj(hidden_states)).unflatten(-1, (self.num_v_heads, self.gate_width))
        g = kda_gate(gate_pre, self.A_log, self.dt_bias, lower_bound=self.gate_lower_bound)  # [B, T, HV, K|1], fp32
        g = g.expand(B, T, self.num_v_heads, self.head_dim)
        beta = torch.sigmoid(self.b_proj(hidden_states).float())

        previous = None if state is None else state.recurrent
        if previous is not None and T <= RECURRENT_MAX_TOKENS and not torch.is_grad_enabled():
            o, _ = fused_recurrent_kda(q, k, v, g, beta, initial_state=previous, inplace_final_state=True)
        else:
            o, final = chunk_kda(
                q, k, v, g, beta, initial_state=previous, output_final_state=state is not None,
                chunk_size=self.chunk_size, compiled=self.compiled_chunk and torch.is_grad_enabled(),
            )  # fmt: skip
            if state is not None:
                state.recurrent = final.detach()

        gate = self.g_b_proj(self.g_a_proj(hidden_states)).unflatten(-1, (self.num_v_heads, self.head_dim))
        o = self.o_norm(o, gate).to(hidden_states.dtype).reshape(B, T, self.value_dim)
        return self.o_proj(o)
