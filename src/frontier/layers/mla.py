"""Multi-head latent attention without positional encoding (Kimi Linear §4; DeepSeek-V2's MLA with NoPE).

Each token is compressed to a latent c = RMSNorm(W_dkv x) of `kv_lora_rank` values plus a `rope_dim` key slice
shared by all heads (never rotated: KDA layers supply position). Per head, keys and values are up-projections of
the latent, k_h = [W_uk,h c ; k_shared], v_h = W_uv,h c. The cache holds only (c, k_shared) per token.

Two equal ways to attend:
- expanded (prefill, training): up-project every cached latent to K and V and run SDPA;
- absorbed (decoding): fold W_uk into the query and W_uv into the output, q̃_h = W_uk,hᵀ q_h, and attend over
  the latents directly: score = q̃_h · c + q_rope,h · k_shared, out_h = W_uv,h (Σ p · c). A decode step then costs
  O(T · (kv_lora_rank + rope_dim)) per head instead of re-expanding all T cached tokens.
Parameter names match transformers' `KimiLinearAttention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from frontier.layers.norm import RMSNorm


class MLAState:
    """The MLA cache: latent [B, S, kv_lora_rank] and shared key slice [B, S, rope_dim] for the S seen tokens.

    Tokens are written into preallocated buffers whose capacity doubles when full, so a decode step costs O(1)
    amortised instead of copying the whole cache (what `torch.cat` per step would do).
    """

    def __init__(self) -> None:
        self._latent: torch.Tensor | None = None
        self._k_rope: torch.Tensor | None = None
        self.length = 0

    @property
    def latent(self) -> torch.Tensor | None:
        return None if self._latent is None else self._latent[:, : self.length]

    @property
    def k_rope(self) -> torch.Tensor | None:
        return None if self._k_rope is None else self._k_rope[:, : self.length]

    def append(self, latent: torch.Tensor, k_rope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add T tokens ([B, T, ·] each) and return the whole cache as views [B, S, ·]."""
        end = self.length + latent.shape[1]
        if self._latent is None or end > self._latent.shape[1]:
            capacity = max(end, 2 * (0 if self._latent is None else self._latent.shape[1]))
            grown = [t.new_empty(t.shape[0], capacity, t.shape[2]) for t in (latent, k_rope)]
            if self._latent is not None:
                grown[0][:, : self.length] = self.latent
                grown[1][:, : self.length] = self.k_rope
            self._latent, self._k_rope = grown
        self._latent[:, self.length : end] = latent.detach()
        self._k_rope[:, self.length : end] = k_rope.detach()
        self.length = end
        return self.latent, self.k_rope

    def nbytes(self) -> int:
        """Bytes of the cached tokens (the buffers' spare capacity is not counted)."""
        if self._latent is None:
            return 0
        return self.length * (self._latent[:, :1].nbytes + self._k_rope[:, :1].nbytes)

    def tensors(self) -> list[torch.Tensor]:
        return [] if self._latent is None else [self.latent, self.k_rope]

    def select(self, index: torch.Tensor) -> None:
        if self._latent is not None:
            index = index.to(self._latent.device)  # the layers of a model split across devices share one index
            self._latent, self._k_rope = self._latent.index_select(0, index), self._k_rope.index_select(0, index)


def attention_mask(
    q_len: int, kv_len: int, padding_mask: torch.Tensor | None, device: torch.device
) -> torch.Tensor | None:
    """Boolean [B|1, 1, q_len, kv_len] mask (True = may attend): causal with the queries at the end, minus padding.

    A query may always attend to itself, so a padding query (whose keys are all masked) never yields NaN.
    """
    if padding_mask is None and q_len == 1:
        return None  # one new query, no padding: it may attend to every cached key
    past = kv_len - q_len
    q_pos = torch.arange(q_len, device=device)[:, None] + past
    k_pos = torch.arange(kv_len, device=device)[None, :]
    allowed = (k_pos <= q_pos)[None, None]
    if padding_mask is not None:
        allowed = allowed & padding_mask[:, None, None, -kv_len:].bool()
        allowed = allowed | (k_pos == q_pos)[None, None]
    return allowed


class MultiHeadLatentAttention(nn.Module):
    """NoPE MLA. Shapes: hidden [B, T, hidden] → [B, T, hidden]; the state grows by T latents per call."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        kv_lora_rank: int,
        qk_nope_head_dim: int,
        qk_rope_head_dim: int,
        v_head_dim: int,
        bias: bool = False,
        absorb_for_decoding: bool = True,
    ) -> None:
        super().__init__()
        self.num_heads, self.kv_lora_rank = num_heads, kv_lora_rank
        self.nope_dim, self.rope_dim, self.v_dim = qk_nope_head_dim, qk_rope_head_dim, v_head_dim
        self.scaling = (qk_nope_head_dim + qk_rope_head_dim) ** -0.5
        self.absorb_for_decoding = absorb_for_decoding
        self.q_proj = nn.Linear(hidden_size, num_heads * (qk_nope_head_dim + qk_rope_head_dim), bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(hidden_size, kv_lora_rank + qk_rope_head_dim, bias=bias)
        self.kv_a_layernorm = RMSNorm(kv_lora_rank)  # eps 1e-6, as the released model
        self.kv_b_proj = nn.Linear(kv_lora_rank, num_heads * (qk_nope_head_dim + v_head_dim), bias=False)
        self.o_proj = nn.Linear(num_heads * v_head_dim, hidden_size, bias=bias)

    def _expanded(self, q, latent, k_rope, mask):
        """Up-project every cached latent to per-head K and V, then SDPA. q [B, H, T, nope+rope]."""
        B, S, _ = latent.shape
        kv = self.kv_b_proj(latent).view(B, S, self.num_heads, self.nope_dim + self.v_dim).transpose(1, 2)
        k_nope, v = kv.split([self.nope_dim, self.v_dim], dim=-1)
        k = torch.cat([k_nope, k_rope[:, None].expand(B, self.num_heads, S, self.rope_dim)], dim=-1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling)  # [B, H, T, v_dim]

    def _absorbed(self, q, latent, k_rope, mask):
        """Attend over the latents with W_uk folded into the query and W_uv into the output."""
        B, H, T, _ = q.shape
        w = self.kv_b_proj.weight.view(H, self.nope_dim + self.v_dim, self.kv_lora_rank)
        w_uk, w_uv = w.split([self.nope_dim, self.v_dim], dim=1)  # [H, nope, L], [H, v, L]
        q_nope, q_rope = q.split([self.nope_dim, self.rope_dim], dim=-1)  # [B, H, T, ·]
        q_latent = torch.einsum("bhtd,hdl->bhtl", q_nope, w_uk)  # [B, H, T, L]
        # Heads × queries go in the matmul's row dimension, so the shared latents are read once, never expanded.
        scores = q_latent.reshape(B, H * T, -1) @ latent.transpose(1, 2)  # [B, H·T, S]
        scores = scores + q_rope.reshape(B, H * T, -1) @ k_rope.transpose(1, 2)
        scores = scores.view(B, H, T, -1) * self.scaling
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out_latent = scores.softmax(-1).view(B, H * T, -1) @ latent  # [B, H·T, L]
        return torch.einsum("bhtl,hvl->bhtv", out_latent.view(B, H, T, -1), w_uv)

    def forward(
        self,
        hidden_states: torch.Tensor,
        state: MLAState | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """padding_mask [B, S_total] (1 = token) covers cached and new tokens."""
        B, T, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(B, T, self.num_heads, -1).transpose(1, 2)
        latent, k_rope = self.kv_a_proj_with_mqa(hidden_states).split([self.kv_lora_rank, self.rope_dim], dim=-1)
        latent = self.kv_a_layernorm(latent)
        if state is not None:
            latent, k_rope = state.append(latent, k_rope)
        mask = attention_mask(T, latent.shape[1], padding_mask, hidden_states.device)
        decoding = state is not None and T == 1 and latent.shape[1] > 1
        if decoding and self.absorb_for_decoding and not torch.is_grad_enabled():
            out = self._absorbed(q, latent, k_rope, mask)
        else:
            out = self._expanded(q, latent, k_rope, mask)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.v_dim))
