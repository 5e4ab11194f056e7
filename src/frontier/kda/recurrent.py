"""Token-by-token KDA for decoding: the state is a fixed-size [B, HV, K, V] buffer updated in place."""

from __future__ import annotations

import torch

from frontier.errors import ConfigError
from frontier.kda.checks import check_kda_inputs


def fused_recurrent_kda(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    inplace_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The recurrence of `naive_recurrent_kda` with in-place state updates and batched matmuls, for inference.

    Each token costs O(HV · K · V) whatever the context length: this is what replaces a growing KV cache. With
    `inplace_final_state=True` the float32 `initial_state` buffer itself is updated and returned as the final state
    (no allocation per step). No gradients: train with `chunk_kda`.

    Shapes: q, k [B, T, H, K]; v [B, T, HV, V]; g [B, T, HV, K] (≤ 0); beta [B, T, HV]; state [B, HV, K, V].
    """
    check_recurrent_inputs(q, k, v, g, beta, initial_state, inplace_final_state)
    with torch.no_grad():
        return _fused_recurrent(q, k, v, g, beta, scale, initial_state, output_final_state, inplace_final_state)


def check_recurrent_inputs(q, k, v, g, beta, initial_state, inplace_final_state: bool) -> None:
    """`check_kda_inputs`, plus what the decoding kernel needs (ours and fla's alike): no gradients, and for an
    in-place update a contiguous state buffer in the compute dtype (float32; float64 for float64 inputs)."""
    check_kda_inputs(q, k, v, g, beta, initial_state)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, g, beta, initial_state)):
        raise ConfigError("fused_recurrent_kda is an inference kernel without a backward; train with chunk_kda")
    compute = torch.float64 if v.dtype == torch.float64 else torch.float32
    if inplace_final_state and (
        initial_state is None or initial_state.dtype != compute or not initial_state.is_contiguous()
    ):
        raise ConfigError(f"inplace_final_state=True needs a contiguous {compute} initial_state to update")


def _fused_recurrent(q, k, v, g, beta, scale, initial_state, output_final_state, inplace_final_state):
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    scale = K**-0.5 if scale is None else scale
    dtype = v.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    if inplace_final_state:
        S = initial_state
    elif initial_state is None:
        S = q.new_zeros(B, HV, K, V, dtype=compute)
    else:
        S = initial_state.to(compute).clone(memory_format=torch.contiguous_format)

    group = HV // H
    q = q.to(compute).repeat_interleave(group, dim=2) * scale
    k = k.to(compute).repeat_interleave(group, dim=2)
    decay = g.to(compute).exp()  # [B, T, HV, K]
    beta = beta.to(compute)
    v = v.to(compute)
    S_flat = S.view(B * HV, K, V)
    o = torch.empty(B, T, HV, V, dtype=compute, device=v.device)
    for t in range(T):
        k_t = k[:, t].reshape(B * HV, 1, K)
        S.mul_(decay[:, t, :, :, None])
        error = v[:, t].reshape(B * HV, 1, V) - torch.bmm(k_t, S_flat)  # [B*HV, 1, V]: v_t − Sᵀ k_t
        S_flat.baddbmm_(k_t.transpose(1, 2) * beta[:, t].reshape(B * HV, 1, 1), error)
        o[:, t] = torch.bmm(q[:, t].reshape(B * HV, 1, K), S_flat).view(B, HV, V)
    return o.to(dtype), (S if output_final_state or inplace_final_state else None)
