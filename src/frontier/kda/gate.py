"""The KDA forget gate in log space: g = log α, one value per head and key channel (Kimi Linear §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from frontier.errors import ConfigError, ShapeError


def kda_gate(
    g: torch.Tensor,
    A_log: torch.Tensor | None,
    dt_bias: torch.Tensor | None = None,
    lower_bound: float | None = None,
) -> torch.Tensor:
    """Turn the gate projection's output into log-decays ≤ 0, in float32.

    Softplus form (the released Kimi-Linear-48B): g = −exp(A_log[h]) · softplus(x + dt_bias).
    Lower-bounded form (`lower_bound` < 0, fla's "safe gate"): g = lower_bound · sigmoid(exp(A_log[h]) · (x + dt_bias)),
    which keeps every g in [lower_bound, 0): a 16-step cumulative sum stays ≥ 16 · lower_bound, far from exp's
    underflow to 0 and the overflow of its reciprocal; −5 is the value fla recommends.

    Args:
        g: [..., H, K] gate pre-activations.
        A_log: [H] per-head log rate (any shape with H elements); may be None only with `lower_bound`.
        dt_bias: [H * K] per-channel bias, optional.
        lower_bound: None for the softplus form, else a negative float.
    """
    if g.dim() < 2:
        raise ShapeError(f"g must have shape [..., H, K], got {list(g.shape)}")
    H, K = g.shape[-2:]
    x = g.float()
    if dt_bias is not None:
        if dt_bias.numel() != H * K:
            raise ShapeError(f"dt_bias has {dt_bias.numel()} elements, expected H * K = {H} * {K} = {H * K}")
        x = x + dt_bias.float().view(H, K)
    if A_log is not None and A_log.numel() != H:
        raise ShapeError(f"A_log has shape {list(A_log.shape)} ({A_log.numel()} elements), expected {H} (one per head)")
    if lower_bound is None:
        if A_log is None:
            raise ConfigError("the softplus gate needs A_log; pass A_log or a lower_bound for the sigmoid gate")
        return -A_log.float().view(H, 1).exp() * F.softplus(x)
    if not lower_bound < 0:
        raise ConfigError(f"lower_bound must be negative (fla recommends -5.0), got {lower_bound}")
    if A_log is not None:
        x = A_log.float().view(H, 1).exp() * x
    return lower_bound * torch.sigmoid(x)
