"""The KDA recurrence token by token: the slow, obviously correct reference every fast path is tested against.

Kimi Linear, arXiv 2510.26692, Eq. 1. Per value head the state S ∈ R^{K×V} evolves as

    S_t = (I − β_t k_t k_tᵀ) Diag(α_t) S_{t−1} + β_t k_t v_tᵀ,        o_t = S_tᵀ (scale · q_t)

with α_t = exp(g_t) a per-key-channel forget gate (g ≤ 0, kept in log space) and β_t a per-head scalar.
"""

from __future__ import annotations

import torch

from frontier.kda.checks import check_kda_inputs


def naive_recurrent_kda(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated delta rule with channel-wise decay, one token at a time, in float32 (float64 stays float64).

    Args:
        q, k: [B, T, H, K] queries and keys (normalise them yourself; the layer L2-normalises).
        v: [B, T, HV, V] values; HV must be a multiple of H (each q/k head serves HV/H value heads).
        g: [B, T, HV, K] log forget gate, ≤ 0.
        beta: [B, T, HV] write strength, usually in [0, 1].
        scale: query scale, default K^-0.5.
        initial_state: [B, HV, K, V] state before the first token.
        output_final_state: also return the state after the last token.

    Returns:
        o [B, T, HV, V] in v's dtype, and the final state [B, HV, K, V] (float32) or None.
    """
    B, T, H, HV, K, V = check_kda_inputs(q, k, v, g, beta, initial_state)
    scale = K**-0.5 if scale is None else scale
    dtype = v.dtype
    compute = torch.float64 if v.dtype == torch.float64 else torch.float32
    q, k, v, g, beta = (x.to(compute) for x in (q, k, v, g, beta))
    group = HV // H
    q = q.repeat_interleave(group, dim=2) * scale  # [B, T, HV, K]
    k = k.repeat_interleave(group, dim=2)  # [B, T, HV, K]

    S = q.new_zeros(B, HV, K, V)
    if initial_state is not None:
        S = S + initial_state.to(compute)
    outputs = []
    for t in range(T):
        # 1. decay every key row of the state by its own channel's forget gate
        S = S * g[:, t, :, :, None].exp()
        # 2. delta rule: move the state's prediction for k_t towards v_t by a step of size beta_t
        prediction = torch.einsum("bhk,bhkv->bhv", k[:, t], S)
        S = S + torch.einsum("bhk,bhv->bhkv", k[:, t] * beta[:, t, :, None], v[:, t] - prediction)
        # 3. read out with the query
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(outputs, dim=1) if outputs else v.new_zeros(B, 0, HV, V)
    final = S if output_final_state else None
    return o.to(dtype), final
