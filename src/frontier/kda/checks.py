"""Input validation shared by every KDA op: one error that names the tensor, its shape and the expected shape."""

from __future__ import annotations

import torch

from frontier.errors import ConfigError, ShapeError


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def check_kda_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None,
) -> tuple[int, int, int, int, int, int]:
    """Validate fla's layout and return `(B, T, H, HV, K, V)`.

    q, k: [B, T, H, K]; v: [B, T, HV, V]; g: [B, T, HV, K] with g ≤ 0; beta: [B, T, HV];
    initial_state: [B, HV, K, V]; HV must be a multiple of H (grouped value heads).
    """
    for name, t, rank in (("q", q, 4), ("k", k, 4), ("v", v, 4), ("g", g, 4), ("beta", beta, 3)):
        if not isinstance(t, torch.Tensor):
            raise ShapeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != rank:
            layout = "[B, T, HV]" if name == "beta" else "[B, T, H(V), K|V]"
            raise ShapeError(f"{name} must have {rank} dims {layout}, got shape {_shape(t)}")
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    expected = {
        "k": (k, (B, T, H, K)),
        "v": (v, (B, T, HV, V)),
        "g": (g, (B, T, HV, K)),
        "beta": (beta, (B, T, HV)),
    }
    for name, (t, shape) in expected.items():
        if tuple(t.shape) != shape:
            raise ShapeError(
                f"{name} has shape {_shape(t)}, expected [{', '.join(map(str, shape))}] (from q {_shape(q)})"
            )
    if HV % H != 0:
        raise ShapeError(
            f"v has {HV} heads, which is not a multiple of the {H} query/key heads (q {_shape(q)}, v {_shape(v)}): "
            f"give v a multiple of {H} heads, or q and k a divisor of {HV}"
        )
    if initial_state is not None and tuple(initial_state.shape) != (B, HV, K, V):
        raise ShapeError(f"initial_state has shape {_shape(initial_state)}, expected [{B}, {HV}, {K}, {V}]")
    if g.numel() and g.detach().amax() > 0:  # one reduction, no [B, T, HV, K] mask
        raise ConfigError(f"g holds log-decays and must be <= 0, but max(g) = {g.max().item():.4g} (g {_shape(g)})")
    return B, T, H, HV, K, V
