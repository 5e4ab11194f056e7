"""Chunkwise-parallel KDA (Kimi Linear, arXiv 2510.26692, §3.1, Eqs. 2-9), in plain PyTorch for any device.

Inside a chunk of C tokens with start state S0, write the per-token update as S_i = D_i S_{i-1} + k_i δ_iᵀ with
D_i = Diag(α_i) and the "pseudo-value" δ_i = β_i (v_i − k_iᵀ D_i S_{i-1}). Unrolling with the cumulative log-decay
gc_i = Σ_{j≤i} g_j gives a lower-triangular system for all δ of the chunk at once (the UT transform, Eq. 6-7):

    (I + Diag(β) StrictTril(A)) δ = Diag(β) (V − (K ⊙ e^gc) S0),   A_ij = Σ_d k_i[d] k_j[d] e^(gc_i[d] − gc_j[d])

so δ = U − W S0 with U, W computed for every chunk and head at once. Only the state hand-off between chunks is
sequential:

    O     = (Q ⊙ e^gc) S0 + Tril(Aqk) δ,                        Aqk_ij = Σ_d q_i[d] k_j[d] e^(gc_i[d] − gc_j[d])
    S_next = Diag(e^gc_C) S0 + (K ⊙ e^(gc_C − gc))ᵀ δ

Two ways to the same numbers. `exact_ut_transform` keeps every exponent a difference gc_i − gc_j with j ≤ i, hence
≤ 0, so nothing overflows however strong the decay (`decayed_scores` shows how this stays mostly matmuls), then solves
the C×C system. `factored_ut_transform`, taken when no 16-token block decays by more than FACTORED_MAX_SPAN (an
average log-decay of −4 per token), factors each block's decays through one reference, with exponents up to +32, and
substitutes block by block, with fewer elementwise passes and no C×C matrix. That is fla's "safe gate" idea
(positive exponents inside 16-token blocks where the decay is bounded), with the bound checked on the data rather
than assumed.

Without autograd (inference, prefill), `inference_chunk_kda` goes further where no chunk decays by more than
INFERENCE_MAX_SPAN: the whole chunk factors through one reference, so all scores come from two matmuls, and it works
through the sequence tile by tile, updating buffers of its own in place, so its working buffers stay tile-sized.
Those buffers are kept per thread (`scratch`) and reused by the next tile and the next call: on CPU, every fresh
multi-MB tensor costs a page fault per 4 KB on first touch, about a fifth of the op's time at T = 4096.
"""

from __future__ import annotations

import math
import numbers
import threading

import torch
import torch.nn.functional as F

from frontier.errors import ConfigError
from frontier.kda.checks import check_kda_inputs

# Chunks are split into 16-token blocks, those into 4-token blocks, those into single tokens; at every level a pair
# in different blocks factors through a reference position, so no [C, C, K] tensor is ever formed.
SUB_BLOCKS = (16, 4, 1)
# The fast path for gates of moderate strength: 16-token blocks whose cumulative log-decay drops by at most
# FACTORED_MAX_SPAN in every channel factor through one reference each (`factored_ut_transform`); each factor stays
# within e^±32, far from fp32's limits. Stronger decays take `exact_ut_transform`, the same results by other means.
FACTORED_BLOCK = 16
FACTORED_MAX_SPAN = 64.0
# The inference path factors a whole chunk through the midpoint of its cumulative log-decay when it spans at most
# INFERENCE_MAX_SPAN in every channel (an average log-decay of −2 per token over 64): each factor within e^±64.
INFERENCE_MAX_SPAN = 128.0
# Chunk × head matrices per tile of the inference path: enough for the batched matmuls to run well, few enough for a
# tile's buffers (a few MB) to stay in cache. Measured on 2 cores at B=1, H=4: 64 beat both 16 and the whole sequence.
INFERENCE_TILE_MATRICES = 64
# Largest buffer `scratch` keeps. A tile's buffers are 0.5-2 MB each at K = V = 64 up to B·HV = 64, so a thread
# keeps about 16 MB; bigger ones (tiles of one chunk with B·HV > 128) are allocated afresh each time.
SCRATCH_MAX_BYTES = 4 << 20
_scratch = threading.local()


def scratch(name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised [shape] tensor of `like`'s dtype and device for the inference path's buffer `name`, carved
    from storage this thread keeps and grows to the largest size asked (up to SCRATCH_MAX_BYTES); the next request
    for `name` reuses it, so a caller must be done with the tensor first and must not return it."""
    size = math.prod(shape)
    if size * like.element_size() > SCRATCH_MAX_BYTES:
        return like.new_empty(shape)
    buffers = _scratch.__dict__.setdefault("buffers", {})
    # inference-mode tensors may not be updated in place outside inference mode, so each mode has its own
    key = (name, like.dtype, like.device, torch.is_inference_mode_enabled())
    if key not in buffers or buffers[key].numel() < size:
        buffers[key] = like.new_empty(size)
    return buffers[key][:size].view(shape)


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


def _chunk_view(x: torch.Tensor, n_chunks: int, chunk_size: int) -> torch.Tensor:
    """[B, T, HV, D] (or [B, T, HV]) zero-padded on T → a [B, HV, N, C, D] (or [B, HV, N, C]) view, not a copy."""
    pad = n_chunks * chunk_size - x.shape[1]
    x = F.pad(x, (0, 0) * (x.dim() - 2) + (0, pad)) if pad else x
    return x.unflatten(1, (n_chunks, chunk_size)).movedim(3, 1)


def _to_chunks(x: torch.Tensor, n_chunks: int, chunk_size: int) -> torch.Tensor:
    """`_chunk_view`, contiguous."""
    return _chunk_view(x, n_chunks, chunk_size).contiguous()


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
        intra_chunk, chunk_output, q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size, True
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
    inference_path: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate, then run the three stages: `intra_chunk_stage` (every chunk at once), the sequential state pass,
    `output_stage` (every chunk at once). The two parallel stages are arguments so `frontier.kda.compiled` can
    hand in compiled versions of the same functions. With `inference_path`, calls that need no gradient and whose
    chunks decay by at most INFERENCE_MAX_SPAN run `inference_chunk_kda` instead."""
    B, T, _, HV, K, V = check_kda_inputs(q, k, v, g, beta, initial_state)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if scale is not None and not isinstance(scale, numbers.Real):
        raise ConfigError(f"scale must be a number (or None for K^-0.5), got {type(scale).__name__}")
    scale = K**-0.5 if scale is None else float(scale)
    compute = torch.float64 if v.dtype == torch.float64 else torch.float32
    # A sequence shorter than one chunk needs only a chunk of its own length (rounded up to 16-token blocks); the
    # result is the same, the padding work is not.
    C = min(chunk_size, max(SUB_BLOCKS[0], math.ceil(T / SUB_BLOCKS[0]) * SUB_BLOCKS[0]))
    N = max(1, math.ceil(T / C))
    inputs = [x.to(compute) for x in (q, k, v, g, beta)]
    S = v.new_zeros(B, HV, K, V, dtype=compute) if initial_state is None else initial_state.to(compute)
    tensors = (q, k, v, g, beta, initial_state)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    blocked = C % FACTORED_BLOCK == 0
    if inference_path and T and not needs_grad and blocked and block_decay(inputs[3], C) <= INFERENCE_MAX_SPAN:
        o, S = inference_chunk_kda(*inputs, scale, S, N, C)
    else:
        factored = blocked and block_decay(inputs[3], FACTORED_BLOCK) <= FACTORED_MAX_SPAN
        q_effective, AU, transition, injection = intra_chunk_stage(*inputs, N, C, factored)
        S0, S = inter_chunk(transition, injection, S)
        o = output_stage(q_effective, AU, S0, T, scale).contiguous()
    return o.to(v.dtype), (S if output_final_state else None)


def block_decay(g: torch.Tensor, length: int) -> float:
    """The largest total log-decay −Σ g over `length` consecutive tokens (blocks aligned to the chunks), over every
    head and channel: a bound on how far the cumulative decay falls inside one block."""
    g = g.detach()  # a path choice, not part of the graph
    pad = -g.shape[1] % length
    blocks = F.pad(g, (0, 0, 0, 0, 0, pad)) if pad else g
    return -blocks.unflatten(1, (-1, length)).sum(2).min().item() if g.numel() else 0.0


def intra_chunk(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    N: int,
    C: int,
    factored: bool,
) -> tuple[torch.Tensor, ...]:
    """Everything that needs no state, for all chunks and heads at once: the output's two parts Q_eff and Aqk U, and
    each chunk's state map S_next = transition · S + injection (U and W themselves are not kept). The output is
    linear in q, so the query scale is left to `chunk_output`.

    With δ = U − W S0, the output O = (Q ⊙ e^gc) S0 + Tril(Aqk) δ = Q_eff S0 + Aqk U, where Q_eff = Q ⊙ e^gc − Aqk W.
    The map follows from S_next = Diag(e^gc_C) S + (K ⊙ e^(gc_C − gc))ᵀ (U − W S): transition = Diag(e^gc_C) −
    (K ⊙ e^(gc_C − gc))ᵀ W and injection = (K ⊙ e^(gc_C − gc))ᵀ U, so the sequential pass is one matmul per chunk.
    `factored` picks `factored_ut_transform` (gates within FACTORED_MAX_SPAN per block) over `exact_ut_transform`.
    Shapes: Q_eff [B, HV, N, C, K], Aqk U [.., C, V], transition [.., K, K], injection [.., K, V].
    """
    group = v.shape[2] // q.shape[2]
    V = v.shape[-1]
    if group > 1:
        q, k = q.repeat_interleave(group, dim=2), k.repeat_interleave(group, dim=2)
    q = _to_chunks(q, N, C)  # [B, HV, N, C, K]
    k = _to_chunks(k, N, C)  # [B, HV, N, C, K]
    v = _to_chunks(v, N, C)  # [B, HV, N, C, V]
    gc = _to_chunks(g, N, C).cumsum(-2)  # [B, HV, N, C, K], ≤ 0 and non-increasing
    beta = _to_chunks(beta, N, C)[..., None]  # [B, HV, N, C, 1]
    k_beta = k * beta  # the system's rows carry β: (I + Diag(β) StrictTril(A))

    v_beta = v * beta
    transform = factored_ut_transform if factored else exact_ut_transform
    q_decayed, AUW, KUW = transform(q, k, k_beta, v_beta, gc)
    AU, AW = AUW.split([V, AUW.shape[-1] - V], dim=-1)
    injection, absorbed = KUW.split([V, KUW.shape[-1] - V], dim=-1)
    transition = -absorbed
    transition.diagonal(dim1=-2, dim2=-1).add_(gc[..., -1, :].exp())  # Diag(e^gc_C) − …, no [K, K] diagonal matrix
    return q_decayed - AW, AU, transition, injection


def exact_ut_transform(
    q: torch.Tensor, k: torch.Tensor, k_beta: torch.Tensor, v_beta: torch.Tensor, gc: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The UT transform for any decay, every chunk at once: solve (I + Diag(β) StrictTril(A)) [U | W] = Diag(β) [V |
    K ⊙ e^gc], then Aqk [U | W] and (K ⊙ e^(gc_C − gc))ᵀ [U | W]. The scores come from `decayed_scores`, whose every
    exponent is ≤ 0. Returns Q ⊙ e^gc [.., C, K] and those two products [.., C, V + K], [.., K, V + K]."""
    Aqk, Akk_beta = decayed_scores((q, k_beta), k, gc)  # [B, HV, N, C, C], the diagonal included
    decay = gc.exp()
    rhs = torch.cat([v_beta, k_beta * decay], dim=-1)
    # The solve reads only the strict lower triangle (unit diagonal). One flat batch: LAPACK's batched triangular
    # solve is markedly faster over [B·HV·N] than over [B, HV, N].
    UW = torch.linalg.solve_triangular(Akk_beta.flatten(0, 2), rhs.flatten(0, 2), upper=False, unitriangular=True)
    UW = UW.view(rhs.shape)  # [B, HV, N, C, V + K]
    k_to_end = k * (gc[..., -1:, :] - gc).exp()  # each key decayed to the end of its chunk
    return q * decay, Aqk @ UW, k_to_end.transpose(-1, -2) @ UW


def factored_ut_transform(
    q: torch.Tensor, k: torch.Tensor, k_beta: torch.Tensor, v_beta: torch.Tensor, gc: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`exact_ut_transform` for gates whose 16-token blocks span ≤ FACTORED_MAX_SPAN, by forward substitution over
    the blocks of every chunk at once: no [C, C] matrix and no [C, C] solve.

    Each block factors its pairs through a per-channel reference ref (the midpoint of its cumulative log-decay):
    e^(gc_i − gc_j) = e^(gc_i − ref) · e^(ref − gc_j), each factor within e^(±span/2), so the scores inside a block
    are one matmul, and a key j of an earlier block b reaches block m through the link e^(ref_m − ref_b) ≤ 1. Then
    [u | w]_m = (I + StrictTril(A_mm))⁻¹ (Diag(β) [V | K ⊙ e^gc]_m − A_m,<m [u | w]_<m) and the output rows are
    Aqk_m,≤m [u | w]_≤m. Where a link underflows, the term lost is below e^(−87 + span) ≤ e^(−23) of |q||k|.
    """
    n = k.shape[-2] // FACTORED_BLOCK

    def blocks(x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-2, (n, FACTORED_BLOCK))  # [..., n, 16, D]

    gc_blocks = blocks(gc)
    ref = (gc_blocks[..., :1, :] + gc_blocks[..., -1:, :]) / 2  # [..., n, 1, K]
    up = (gc_blocks - ref).exp()  # e^(gc_i − ref): from a block's reference to each of its tokens
    q_up, k_beta_up, k_down = blocks(q) * up, blocks(k_beta) * up, blocks(k) * up.reciprocal()
    k_down_T = k_down.transpose(-1, -2)  # [..., n, K, 16]
    inside_q = (q_up @ k_down_T).tril()  # [..., n, 16, 16], the diagonal included
    eye = torch.eye(FACTORED_BLOCK, dtype=q.dtype, device=q.device)
    # (I + StrictTril(A_mm))⁻¹ of all blocks in one batched solve, which reads only the strict lower triangle.
    inverse = torch.linalg.solve_triangular(k_beta_up @ k_down_T, eye, upper=False, unitriangular=True)
    start_decay = ref.exp()  # [..., n, 1, K]: from the chunk's start to each reference, ≤ 1
    rhs = torch.cat([blocks(v_beta), k_beta_up * start_decay], dim=-1)  # Diag(β) [V | K ⊙ e^gc], blocked

    uw = [inverse[..., 0, :, :] @ rhs[..., 0, :, :]]  # [u | w] per block: [..., 16, V + K]
    outputs = [inside_q[..., 0, :, :] @ uw[0]]
    for m in range(1, n):
        link = (ref[..., m : m + 1, :, :] - ref[..., :m, :, :]).exp()  # [..., m, 1, K], ≤ 1
        earlier_T = (k_down[..., :m, :, :] * link).flatten(-3, -2).transpose(-1, -2)  # [..., K, 16·m]
        earlier_uw = torch.cat(uw, dim=-2)  # [..., 16·m, V + K]
        uw.append(inverse[..., m, :, :] @ (rhs[..., m, :, :] - (k_beta_up[..., m, :, :] @ earlier_T) @ earlier_uw))
        outputs.append(inside_q[..., m, :, :] @ uw[m] + (q_up[..., m, :, :] @ earlier_T) @ earlier_uw)
    to_end = (gc[..., -1:, None, :] - ref).exp()  # [..., n, 1, K]: from each reference to the chunk's end, ≤ 1
    k_to_end = (k_down * to_end).flatten(-3, -2)  # K ⊙ e^(gc_C − gc)
    UW = torch.cat(uw, dim=-2)
    return (q_up * start_decay).flatten(-3, -2), torch.cat(outputs, dim=-2), k_to_end.transpose(-1, -2) @ UW


def inter_chunk(
    transition: torch.Tensor, injection: torch.Tensor, S: torch.Tensor, out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The only sequential part: hand the state S [B, HV, K, V] from chunk to chunk. Returns every chunk's start
    state [B, HV, N, K, V] (written into `out` if given, without autograd) and the final state.

    Unbinding once (rather than indexing per chunk) keeps the backward linear in N: each indexing op would allocate
    a full-size zero gradient. Chunk-major views keep the loop to one op per chunk.
    """
    B, HV, N, K, V = injection.shape
    S = S.reshape(B * HV, K, V)
    start_states = []
    for transition_n, injection_n in zip(_chunk_major(transition), _chunk_major(injection), strict=True):
        start_states.append(S)
        S = torch.baddbmm(injection_n, transition_n, S)
    return torch.stack(start_states, dim=1, out=out).view(B, HV, N, K, V), S.view(B, HV, K, V)


def _chunk_major(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """[B, HV, N, ...] → N views [B·HV, ...]."""
    return x.movedim(2, 0).flatten(1, 2).unbind(0)


def chunk_output(
    q_effective: torch.Tensor, AU: torch.Tensor, S0: torch.Tensor, T: int, scale: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """O = scale · (Q_eff S0 + Aqk U) for every chunk (see `intra_chunk`), back in fla's layout [B, T, HV, V]; the
    chunk-major result is written into `out` (AU's shape) if given, without autograd."""
    flat_out = None if out is None else out.flatten(0, 2)
    o = torch.baddbmm(AU.flatten(0, 2), q_effective.flatten(0, 2), S0.flatten(0, 2), beta=scale, alpha=scale,
                      out=flat_out)  # fmt: skip
    return o.view(AU.shape).permute(0, 2, 3, 1, 4).flatten(1, 2)[:, :T]  # a strided view: callers copy it once


def inference_chunk_kda(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float,
    S: torch.Tensor,
    N: int,
    C: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`chunk_kda` without autograd, for chunks (C a multiple of 16) that decay by at most INFERENCE_MAX_SPAN: the
    three stages run tile by tile (INFERENCE_TILE_MATRICES chunk × head matrices per tile), so a prefill of any length
    keeps tile-sized intermediates. Inputs in the compute dtype, state S [B, HV, K, V]; returns (o [B, T, HV, V], S).
    """
    B, T, HV, V = v.shape
    group = HV // q.shape[2]
    tile = max(1, INFERENCE_TILE_MATRICES // (B * HV))
    o = v.new_empty(B, T, HV, V)
    for first in range(0, N, tile):
        start, end = first * C, min(T, (first + tile) * C)
        parts = [x[:, start:end] for x in (q, k, v, g, beta)]
        if group > 1:
            parts[:2] = [x.repeat_interleave(group, dim=2) for x in parts[:2]]
        n = math.ceil((end - start) / C)
        q_effective, AU, transition, injection = factored_chunks_in_place(*parts, n, C)
        S0, S = inter_chunk(transition, injection, S, out=scratch("S0", (B * HV, n, *S.shape[-2:]), S))
        o[:, start:end] = chunk_output(q_effective, AU, S0, end - start, scale, out=scratch("o", AU.shape, AU))
    return o, S


def factored_chunks_in_place(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor, N: int, C: int
) -> tuple[torch.Tensor, ...]:
    """`intra_chunk` (same results) for chunks whose cumulative log-decay spans ≤ INFERENCE_MAX_SPAN, without
    autograd, overwriting its own buffers.

    Every chunk factors through the midpoint ref = gc_C / 2 of its decay: e^(gc_i − gc_j) = e^(gc_i − ref) ·
    e^(ref − gc_j), each factor within e^±64, so Aqk and the system's A are one matmul each. Their upper triangles
    (j > i, where the product may overflow) are never read. [U | W] then comes from forward substitution over
    16-token blocks, each block's own system solved by its precomputed inverse.
    """
    V = v.shape[-1]
    # Copies of our own, updated in place below: `contiguous()` could return the caller's tensor itself.
    q, k, gc = (
        scratch(name, view.shape, view).copy_(view)
        for name, view in (("q", _chunk_view(q, N, C)), ("k", _chunk_view(k, N, C)), ("gc", _chunk_view(g, N, C)))
    )
    gc.cumsum_(-2)
    beta = _chunk_view(beta, N, C)[..., None]
    gc_end = gc[..., -1:, :].clone()  # [B, HV, N, 1, K]
    ref = gc_end / 2  # every gc of the chunk lies in [gc_C, 0]
    up = gc.sub_(ref).exp_()  # e^(gc − ref), in gc's buffer
    k_beta_up = torch.mul(k, up, out=scratch("k_beta_up", k.shape, k)).mul_(beta)
    k_down = k.div_(up)
    q_up = q.mul_(up)
    Aqk = _matmul_into("Aqk", q_up, k_down.mT).tril_()  # [B, HV, N, C, C], the diagonal included
    A = _matmul_into("A", k_beta_up, k_down.mT)  # rows carry β: Diag(β) A; read below the diagonal only
    n = C // FACTORED_BLOCK
    diagonal_blocks = A.unflatten(-2, (n, FACTORED_BLOCK)).unflatten(-1, (n, FACTORED_BLOCK))
    diagonal_blocks = diagonal_blocks.diagonal(dim1=-4, dim2=-2).movedim(-1, -3)  # [..., n, 16, 16]
    eye = torch.eye(FACTORED_BLOCK, dtype=q.dtype, device=q.device)
    inverses = torch.linalg.solve_triangular(diagonal_blocks, eye, upper=False, unitriangular=True)
    to_ref = ref.exp()  # e^ref: from the chunk's start to its reference, ≤ 1
    # UW starts as the right-hand side Diag(β) [V | K ⊙ e^gc] and is solved in place, block by block.
    UW = scratch("UW", (*q.shape[:-1], V + q.shape[-1]), q)
    UW[..., :V].copy_(_chunk_view(v, N, C)).mul_(beta)  # a strided copy, then β: faster than one strided mul
    torch.mul(k_beta_up, to_ref, out=UW[..., V:])
    for m in range(n):
        rows = slice(m * FACTORED_BLOCK, (m + 1) * FACTORED_BLOCK)
        block = UW[..., rows, :]
        if m:
            block.sub_(_matmul_into("block", A[..., rows, : rows.start], UW[..., : rows.start, :]))
        block.copy_(_matmul_into("block", inverses[..., m, :, :], block))
    AUW = _matmul_into("AUW", Aqk, UW)
    k_to_end = k_down.mul_((gc_end - ref).exp_())  # K ⊙ e^(gc_C − gc)
    KUW = _matmul_into("KUW", k_to_end.mT, UW)  # [..., K, V + K]
    transition = KUW[..., V:].neg_()
    transition.diagonal(dim1=-2, dim2=-1).add_(gc_end[..., 0, :].exp())
    q_effective = q_up.mul_(to_ref).sub_(AUW[..., V:])  # Q ⊙ e^gc − Aqk W
    return q_effective, AUW[..., :V], transition, KUW[..., :V]


def _matmul_into(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b over matching batch dimensions, written into the scratch buffer `name`."""
    out = scratch(name, (*a.shape[:-1], b.shape[-1]), a)
    torch.bmm(a.flatten(0, -3), b.flatten(0, -3), out=out.flatten(0, -3))
    return out
