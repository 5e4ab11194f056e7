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


def decayed_scores(a: torch.Tensor, b: torch.Tensor, gc: torch.Tensor, include_diagonal: bool) -> torch.Tensor:
    """scores[..., i, j] = Σ_d a_i[d] b_j[d] exp(gc_i[d] − gc_j[d]) for j < i (j ≤ i if include_diagonal), else 0.

    a, b, gc: [..., C, K] with gc non-increasing along C (a cumulative sum of log-decays). Returns [..., C, C].
    A pair (i, j) in different blocks factors through the first position r of i's block: e^(gc_i − gc_r) ·
    e^(gc_r − gc_j), both exponents ≤ 0, so a block of rows against all earlier columns is one matmul. Blocks are
    split again (16 → 4 → 1 tokens) until only the diagonal i = j is left, where the decay is e^0 = 1.
    """
    *lead, C, K = a.shape
    scores = a.new_zeros(*lead, C, C)
    block = C
    for sub in SUB_BLOCKS:
        if block <= sub or block % sub:
            continue
        groups = C // block
        a_g, b_g, gc_g = (x.reshape(*lead, groups, block, K) for x in (a, b, gc))
        # The diagonal [block, block] tiles of `scores`, as one writable view [..., block, block, groups].
        tiles = scores.view(*lead, groups, block, groups, block).diagonal(dim1=-4, dim2=-2)
        for r in range(sub, block, sub):
            ref = gc_g[..., r : r + 1, :]
            cols = b_g[..., :r, :] * (ref - gc_g[..., :r, :]).exp()  # [..., groups, r, K]
            if sub == 1:  # one row: a dot product is cheaper than a batch of 1-row matmuls
                tile = (a_g[..., r : r + 1, :] * cols).sum(-1, keepdim=True).transpose(-1, -2)
            else:
                rows = a_g[..., r : r + sub, :] * (gc_g[..., r : r + sub, :] - ref).exp()
                tile = rows @ cols.transpose(-1, -2)  # [..., groups, sub, r]
            tiles[..., r : r + sub, :r, :] = tile.movedim(-3, -1)
        block = sub
    if block != 1:  # chunk sizes not divisible down to single tokens: explicit pairs inside the last blocks
        groups = C // block
        a_g, b_g, gc_g = (x.reshape(*lead, groups, block, K) for x in (a, b, gc))
        # Above the diagonal the difference is positive: clamp it to 0 before exp, those scores are zeroed below.
        decay = (gc_g[..., :, None, :] - gc_g[..., None, :, :]).clamp(max=0).exp()  # [..., groups, i, j, K]
        pair = (a_g[..., :, None, :] * b_g[..., None, :, :] * decay).sum(-1)  # [..., groups, block, block]
        strict = torch.ones(block, block, dtype=torch.bool, device=a.device).tril(-1)
        tiles = scores.view(*lead, groups, block, groups, block).diagonal(dim1=-4, dim2=-2)
        tiles.copy_((pair * strict).movedim(-3, -1))
    if include_diagonal:
        scores.diagonal(dim1=-2, dim2=-1).copy_((a * b).sum(-1))
    return scores


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
    B, T, H, HV, K, V = check_kda_inputs(q, k, v, g, beta, initial_state)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    scale = K**-0.5 if scale is None else scale
    dtype = v.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    group = HV // H
    C = chunk_size
    N = max(1, math.ceil(T / C))

    q = _to_chunks(q.to(compute).repeat_interleave(group, dim=2) * scale, N, C)  # [B, HV, N, C, K]
    k = _to_chunks(k.to(compute).repeat_interleave(group, dim=2), N, C)  # [B, HV, N, C, K]
    v = _to_chunks(v.to(compute), N, C)  # [B, HV, N, C, V]
    gc = _to_chunks(g.to(compute), N, C).cumsum(-2)  # [B, HV, N, C, K], ≤ 0 and non-increasing
    beta = _to_chunks(beta.to(compute), N, C)  # [B, HV, N, C]

    # UT transform for all chunks at once: solve (I + Diag(β) StrictTril(A)) [U | W] = Diag(β) [V | K ⊙ e^gc].
    k_decayed = k * gc.exp()
    A = beta[..., None] * decayed_scores(k, k, gc, include_diagonal=False)  # [B, HV, N, C, C]
    system = A + torch.eye(C, dtype=compute, device=q.device)
    rhs = beta[..., None] * torch.cat([v, k_decayed], dim=-1)
    UW = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
    U, W = UW[..., :V], UW[..., V:]

    Aqk = decayed_scores(q, k, gc, include_diagonal=True)  # [B, HV, N, C, C]
    gc_last = gc[..., -1:, :]  # [B, HV, N, 1, K]
    k_to_end = k * (gc_last - gc).exp()  # each key decayed to the end of its chunk
    decay_chunk = gc_last.squeeze(-2).exp()[..., None]  # [B, HV, N, K, 1]

    # The only sequential part: hand the state from chunk to chunk. Unbinding once (rather than indexing per chunk)
    # keeps the backward linear in N: each indexing op would allocate a full-size zero gradient.
    S = q.new_zeros(B, HV, K, V) if initial_state is None else initial_state.to(compute)
    start_states, deltas = [], []
    per_chunk = zip(U.unbind(2), W.unbind(2), k_to_end.transpose(-1, -2).unbind(2), decay_chunk.unbind(2), strict=True)
    for U_n, W_n, k_to_end_T_n, decay_n in per_chunk:
        start_states.append(S)
        delta = U_n - W_n @ S  # [B, HV, C, V]
        deltas.append(delta)
        S = decay_n * S + k_to_end_T_n @ delta
    S0 = torch.stack(start_states, dim=2)  # [B, HV, N, K, V]
    delta = torch.stack(deltas, dim=2)  # [B, HV, N, C, V]

    o = (q * gc.exp()) @ S0 + Aqk @ delta  # [B, HV, N, C, V]
    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * C, HV, V)[:, :T]
    return o.to(dtype), (S if output_final_state else None)
