"""Chunkwise-parallel KDA (Kimi Linear, arXiv 2510.26692, §3.1, Eqs. 2-9), in plain PyTorch for any device.

Inside a chunk of C tokens with start state S0, write the per-token update as S_i = D_i S_{i-1} + k_i δ_iᵀ with
D_i = Diag(α_i) and the "pseudo-value" δ_i = β_i (v_i − k_iᵀ D_i S_{i-1}). Unrolling with the cumulative log-decay
gc_i = Σ_{j≤i} g_j gives a lower-triangular system for all δ of the chunk at once (the UT transform, Eq. 6-7):

    (I + Diag(β) StrictTril(A)) δ = Diag(β) (V − (K ⊙ e^gc) S0),   A_ij = Σ_d k_i[d] k_j[d] e^(gc_i[d] − gc_j[d])

so δ = U − W S0 with U, W from one batched triangular solve over every chunk and head. Only the state hand-off
between chunks is sequential:

    O     = (Q ⊙ e^gc) S0 + Tril(Aqk) δ,                        Aqk_ij = Σ_d q_i[d] k_j[d] e^(gc_i[d] − gc_j[d])
    S_next = Diag(e^gc_C) S0 + (K ⊙ e^(gc_C − gc))ᵀ δ

Every exponent is a difference gc_i − gc_j with j ≤ i, hence ≤ 0: nothing overflows however strong the decay
(`decayed_scores` shows how this stays mostly matmuls).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from frontier.errors import ConfigError
from frontier.kda.checks import check_kda_inputs

# Chunks are split into 16-token blocks, those into 4-token blocks, those into single tokens; at every level a pair
# in different blocks factors through a reference position, so no [C, C, K] tensor is ever formed.
SUB_BLOCKS = (16, 4, 1)


def decayed_scores(rows: tuple[torch.Tensor, ...], b: torch.Tensor, gc: torch.Tensor) -> list[torch.Tensor]:
    """For each a in `rows`: scores[..., i, j] = Σ_d a_i[d] b_j[d] exp(gc_i[d] − gc_j[d]) for j ≤ i, else 0.

    a, b, gc: [..., C, K] with gc non-increasing along C (a cumulative sum of log-decays). Returns [..., C, C] each.
    Split C into blocks: a pair (i, j) in different blocks factors through the first position r of i's block,
    e^(gc_i − gc_r) · e^(gc_r − gc_j), both exponents ≤ 0, so a block of rows against all earlier columns is one
    matmul; pairs inside a block recurse (16 → 4 → 1 tokens) down to i = j, where the decay is e^0 = 1. Several
    `rows` (q and k) share the decayed columns, the costly part. Assembled with `cat`, so the backward stays cheap.
    """
    *lead, C, _ = b.shape
    if C == 1:
        return [(a * b).sum(-1, keepdim=True) for a in rows]  # [..., 1, 1]
    sub = next((s for s in SUB_BLOCKS if s < C and C % s == 0), None)
    if sub is None:  # a chunk size with no block structure: form every pair explicitly
        decay = (gc[..., :, None, :] - gc[..., None, :, :]).clamp(max=0).exp()  # [..., C, C, K]; > 0 only above
        causal = torch.ones(C, C, dtype=torch.bool, device=b.device).tril()
        return [(a[..., :, None, :] * b[..., None, :, :] * decay).sum(-1) * causal for a in rows]
    n = C // sub

    def blocks(x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-2, (n, sub))  # [..., n, sub, K]

    inner = [s.unbind(-3) for s in decayed_scores(tuple(blocks(a) for a in rows), blocks(b), blocks(gc))]
    a_blocks = [blocks(a).unbind(-3) for a in rows]
    gc_blocks = blocks(gc).unbind(-3)
    out: list[list[torch.Tensor]] = [[] for _ in rows]
    for m in range(n):
        crosses: list[torch.Tensor] = []
        if m:
            ref = gc_blocks[m][..., :1, :]  # log-decay at the block's first position
            cols = b[..., : m * sub, :] * (ref - gc[..., : m * sub, :]).exp()  # every earlier column: [..., m·sub, K]
            if sub == 1:  # one row: a dot product per column beats a batch of 1-row matmuls
                crosses = [(a[m] * cols).sum(-1)[..., None, :] for a in a_blocks]
            else:
                decay = (gc_blocks[m] - ref).exp()
                stacked = torch.cat([a[m] * decay for a in a_blocks], dim=-2)  # [..., len(rows)·sub, K]
                crosses = list((stacked @ cols.transpose(-1, -2)).split(sub, dim=-2))  # each [..., sub, m·sub]
        for i in range(len(rows)):
            parts = [crosses[i]] if m else []
            parts.append(inner[i][m])
            if m < n - 1:
                parts.append(b.new_zeros(*lead, sub, (n - 1 - m) * sub))
            out[i].append(torch.cat(parts, dim=-1))
    return [torch.cat(r, dim=-2) for r in out]


def _to_chunks(x: torch.Tensor, n_chunks: int, chunk_size: int) -> torch.Tensor:
    """[B, T, HV, D] (or [B, T, HV]) zero-padded on T → [B, HV, N, C, D] (or [B, HV, N, C])."""
    pad = n_chunks * chunk_size - x.shape[1]
    if x.dim() == 3:
        x = F.pad(x, (0, 0, 0, pad))
        return x.reshape(x.shape[0], n_chunks, chunk_size, x.shape[2]).permute(0, 3, 1, 2).contiguous()
    x = F.pad(x, (0, 0, 0, 0, 0, pad))
    return x.reshape(x.shape[0], n_chunks, chunk_size, *x.shape[2:]).permute(0, 3, 1, 2, 4).contiguous()


def chunk_kda(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """KDA over a whole sequence, chunkwise-parallel; same arguments and results as `naive_recurrent_kda`.

    Any T works (the tail chunk is zero-padded: k = v = β = 0 and g = 0 leave the state untouched). Gradients flow
    to q, k, v, g, beta and initial_state through autograd. Computes in float32 (float64 for float64 inputs).

    Shapes: q, k [B, T, H, K]; v [B, T, HV, V]; g [B, T, HV, K] (≤ 0); beta [B, T, HV]; state [B, HV, K, V].
    """
    return run_chunk_stages(
        intra_chunk, chunk_output, q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size
    )


def run_chunk_stages(
    intra_chunk_stage,
    output_stage,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate, then run the three stages: `intra_chunk_stage` (every chunk at once), the sequential state pass,
    `output_stage` (every chunk at once). The two parallel stages are arguments so `frontier.kda.compiled` can
    hand in compiled versions of the same functions."""
    B, T, _, HV, K, V = check_kda_inputs(q, k, v, g, beta, initial_state)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    scale = K**-0.5 if scale is None else scale
    compute = torch.float64 if v.dtype == torch.float64 else torch.float32
    # A sequence shorter than one chunk needs only a chunk of its own length (rounded up to the 16-token blocks of
    # `decayed_scores`); the result is the same, the padding work is not.
    C = min(chunk_size, max(SUB_BLOCKS[0], math.ceil(T / SUB_BLOCKS[0]) * SUB_BLOCKS[0]))
    N = max(1, math.ceil(T / C))
    inputs = [x.to(compute) for x in (q, k, v, g, beta)]
    q_decayed, Aqk, U, W, transition, injection = intra_chunk_stage(*inputs, scale, N, C)
    S = q_decayed.new_zeros(B, HV, K, V) if initial_state is None else initial_state.to(compute)
    S0, S = inter_chunk(transition, injection, S)
    o = output_stage(q_decayed, Aqk, U, W, S0, T)
    return o.to(v.dtype), (S if output_final_state else None)


def intra_chunk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor, scale: float, N: int, C: int
) -> tuple[torch.Tensor, ...]:
    """Everything that needs no state, for all chunks and heads at once: the decayed queries, the causal scores Aqk,
    the UT transform's U and W, and each chunk's state map S_next = transition · S + injection.

    The map follows from S_next = Diag(e^gc_C) S + (K ⊙ e^(gc_C − gc))ᵀ (U − W S): transition = Diag(e^gc_C) −
    (K ⊙ e^(gc_C − gc))ᵀ W and injection = (K ⊙ e^(gc_C − gc))ᵀ U, so the sequential pass is one matmul per chunk.
    Shapes: q_decayed [B, HV, N, C, K], Aqk [.., C, C], U [.., C, V], W [.., C, K], transition [.., K, K],
    injection [.., K, V].
    """
    group = v.shape[2] // q.shape[2]
    V = v.shape[-1]
    q = _to_chunks(q.repeat_interleave(group, dim=2) * scale, N, C)  # [B, HV, N, C, K]
    k = _to_chunks(k.repeat_interleave(group, dim=2), N, C)  # [B, HV, N, C, K]
    v = _to_chunks(v, N, C)  # [B, HV, N, C, V]
    gc = _to_chunks(g, N, C).cumsum(-2)  # [B, HV, N, C, K], ≤ 0 and non-increasing
    beta = _to_chunks(beta, N, C)  # [B, HV, N, C]

    # UT transform for all chunks at once: solve (I + Diag(β) StrictTril(A)) [U | W] = Diag(β) [V | K ⊙ e^gc].
    Aqk, Akk = decayed_scores((q, k), k, gc)  # [B, HV, N, C, C], lower-triangular with the diagonal
    system = beta[..., None] * Akk.tril(-1) + torch.eye(C, dtype=q.dtype, device=q.device)
    rhs = beta[..., None] * torch.cat([v, k * gc.exp()], dim=-1)
    # One flat batch: LAPACK's batched triangular solve is markedly faster over [B·HV·N] than over [B, HV, N].
    UW = torch.linalg.solve_triangular(system.flatten(0, 2), rhs.flatten(0, 2), upper=False, unitriangular=True)
    U, W = UW.view(rhs.shape).split([V, rhs.shape[-1] - V], dim=-1)

    gc_last = gc[..., -1:, :]  # [B, HV, N, 1, K]
    k_to_end_T = (k * (gc_last - gc).exp()).transpose(-1, -2)  # each key decayed to the end of its chunk
    transition = torch.diag_embed(gc_last.squeeze(-2).exp()) - k_to_end_T @ W  # [B, HV, N, K, K]
    injection = k_to_end_T @ U  # [B, HV, N, K, V]
    return q * gc.exp(), Aqk, U, W, transition, injection


def inter_chunk(
    transition: torch.Tensor, injection: torch.Tensor, S: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The only sequential part: hand the state S [B, HV, K, V] from chunk to chunk. Returns every chunk's start
    state [B, HV, N, K, V] and the final state.

    Unbinding once (rather than indexing per chunk) keeps the backward linear in N: each indexing op would allocate
    a full-size zero gradient.
    """
    start_states = []
    for transition_n, injection_n in zip(transition.unbind(2), injection.unbind(2), strict=True):
        start_states.append(S)
        S = torch.baddbmm(injection_n.flatten(0, 1), transition_n.flatten(0, 1), S.flatten(0, 1)).view(S.shape)
    return torch.stack(start_states, dim=2), S


def chunk_output(
    q_decayed: torch.Tensor, Aqk: torch.Tensor, U: torch.Tensor, W: torch.Tensor, S0: torch.Tensor, T: int
) -> torch.Tensor:
    """O = (Q ⊙ e^gc) S0 + Tril(Aqk) δ with the pseudo-values δ = U − W S0, for every chunk, back in fla's layout
    [B, T, HV, V]."""
    B, HV, N, C, V = U.shape
    o = q_decayed @ S0 + Aqk @ (U - W @ S0)  # [B, HV, N, C, V]
    return o.permute(0, 2, 3, 1, 4).reshape(B, N * C, HV, V)[:, :T]
