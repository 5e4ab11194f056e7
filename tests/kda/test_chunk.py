"""chunk_kda against the token-by-token reference: outputs, final state and every gradient."""

from __future__ import annotations

import pytest
import torch

from frontier.errors import ConfigError
from frontier.kda import chunk_kda, naive_recurrent_kda
from frontier.testing import assert_close

GRAD_NAMES = ("q", "k", "v", "g", "beta", "initial_state")


def _run(op, inputs: dict, **kwargs):
    leaves = {n: t.clone().requires_grad_() for n, t in inputs.items() if t is not None}
    o, final = op(**leaves, output_final_state=True, **kwargs)
    # A random projection of both outputs so every gradient path (through o and through the state) is exercised.
    gen = torch.Generator().manual_seed(1)
    loss = (o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum()
    loss = loss + (final * torch.randn(final.shape, generator=gen, dtype=final.dtype)).sum()
    loss.backward()
    return o, final, {n: t.grad for n, t in leaves.items()}


@pytest.mark.parametrize("with_state", [False, True], ids=["h0-none", "h0"])
@pytest.mark.parametrize(
    ("B", "T", "H", "HV", "K", "V"),
    [(2, 1, 2, 2, 16, 16), (2, 2, 2, 4, 16, 8), (2, 63, 2, 2, 32, 16), (2, 64, 1, 3, 16, 24),
     (2, 65, 2, 4, 16, 16), (3, 200, 2, 2, 32, 32)],
    ids=lambda v: str(v),
)  # fmt: skip
def test_chunk_matches_naive_recurrent(kda_inputs, B, T, H, HV, K, V, with_state):
    inputs = kda_inputs(B, T, H, HV, K, V, with_state)
    o_ref, s_ref, grads_ref = _run(naive_recurrent_kda, inputs)
    o, s, grads = _run(chunk_kda, inputs)
    assert_close("o", o_ref, o, atol=1e-4)
    assert_close("final_state", s_ref, s, atol=1e-4)
    for name in GRAD_NAMES:
        if name in grads_ref:
            assert_close(f"d{name}", grads_ref[name], grads[name], atol=1e-4)


@pytest.mark.parametrize("chunk_size", [16, 32, 48, 64, 128])
def test_chunk_sizes_agree(kda_inputs, chunk_size):
    inputs = kda_inputs(1, 150, 2, 2, 16, 16, with_state=True)
    o_ref, s_ref = naive_recurrent_kda(**inputs, output_final_state=True)
    o, s = chunk_kda(**inputs, output_final_state=True, chunk_size=chunk_size)
    assert_close("o", o_ref, o, atol=1e-4)
    assert_close("final_state", s_ref, s, atol=1e-4)


def test_strong_decay_stays_finite_and_exact(kda_inputs):
    """Gates of −200 per token: the naive factorisation e^gc_i · e^−gc_j would overflow; ours never forms it."""
    inputs = kda_inputs(1, 130, 2, 2, 16, 16, with_state=True)
    inputs["g"] = inputs["g"] * 200
    o_ref, s_ref = naive_recurrent_kda(**inputs, output_final_state=True)
    o, s = chunk_kda(**inputs, output_final_state=True)
    assert_close("o", o_ref, o, atol=1e-4)
    assert_close("final_state", s_ref, s, atol=1e-4)


def test_gradcheck_float64(kda_inputs):
    inputs = kda_inputs(1, 11, 1, 2, 4, 3, with_state=True, dtype=torch.float64)
    names = list(inputs)
    leaves = [inputs[n].clone().requires_grad_() for n in names]

    def fn(*tensors):
        o, s = chunk_kda(**dict(zip(names, tensors, strict=True)), output_final_state=True, chunk_size=4)
        return o, s

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-5)


def test_bf16_inputs_compute_in_float32(kda_inputs):
    inputs = kda_inputs(1, 70, 2, 2, 16, 16, with_state=False)
    o_ref, _ = naive_recurrent_kda(**inputs)
    low = {n: (t.bfloat16() if t is not None else None) for n, t in inputs.items()}
    o, _ = chunk_kda(**low)
    assert o.dtype == torch.bfloat16
    assert_close("o (bf16 inputs)", o_ref, o.float(), atol=5e-2)


def test_matches_fla_naive_recurrent_and_chunk(kda_inputs, fla_naive):
    inputs = kda_inputs(2, 128, 2, 4, 32, 16, with_state=True)
    o_fla, s_fla = fla_naive.naive_recurrent_kda(**inputs, output_final_state=True)
    o_fla_chunk, s_fla_chunk = fla_naive.naive_chunk_kda(**inputs, output_final_state=True)
    for op in (naive_recurrent_kda, chunk_kda):
        o, s = op(**inputs, output_final_state=True)
        assert_close(f"{op.__name__} o vs fla naive_recurrent", o_fla, o, atol=1e-4)
        assert_close(f"{op.__name__} state vs fla naive_recurrent", s_fla, s, atol=1e-4)
        assert_close(f"{op.__name__} o vs fla naive_chunk", o_fla_chunk, o, atol=1e-4)
        assert_close(f"{op.__name__} state vs fla naive_chunk", s_fla_chunk, s, atol=1e-4)


@pytest.mark.parametrize("transform", ["factored", "exact"])
def test_gradients_match_fla_naive_recurrent(kda_inputs, fla_naive, monkeypatch, transform):
    """Both autograd paths of chunk_kda, and our reference, against fla's own token-by-token function."""
    from frontier.kda import chunk as chunk_module

    if transform == "exact":
        monkeypatch.setattr(chunk_module, "FACTORED_MAX_SPAN", -1.0)
    inputs = kda_inputs(2, 100, 2, 4, 16, 16, with_state=True)
    o_fla, s_fla, grads_fla = _run(fla_naive.naive_recurrent_kda, inputs)
    for op in (naive_recurrent_kda, chunk_kda):
        o, s, grads = _run(op, inputs)
        assert_close(f"{op.__name__} o", o_fla, o, atol=1e-4)
        assert_close(f"{op.__name__} final_state", s_fla, s, atol=1e-4)
        for name in GRAD_NAMES:
            assert_close(f"{op.__name__} d{name}", grads_fla[name], grads[name], atol=1e-4)


@pytest.fixture
def ut_transforms(monkeypatch):
    """Records which UT transform each chunk_kda call takes."""
    from frontier.kda import chunk as chunk_module

    taken = []
    for name in ("factored_ut_transform", "exact_ut_transform"):
        original = getattr(chunk_module, name)

        def spy(*args, _original=original, _name=name):
            taken.append(_name)
            return _original(*args)

        monkeypatch.setattr(chunk_module, name, spy)
    return taken


@pytest.mark.parametrize(
    ("per_token", "chunk_size", "expected"),
    [(-3.9, 64, "factored_ut_transform"), (-4.1, 64, "exact_ut_transform"), (-0.5, 24, "exact_ut_transform")],
)
def test_each_ut_transform_matches_naive_recurrent(kda_inputs, ut_transforms, per_token, chunk_size, expected):
    """Blocks that decay by at most 64 (−4 per token over 16) take the factored path, others the exact one; a channel
    at the limit next to nearly flat ones exercises the factored path's widest factors. Gradients included."""
    inputs = kda_inputs(2, 150, 2, 2, 16, 16, with_state=True)
    inputs["g"] = inputs["g"] * 0.01
    inputs["g"][..., 3] = per_token  # one channel decays at the limit; over 150 tokens that is e^(−585)
    o_ref, s_ref, grads_ref = _run(naive_recurrent_kda, inputs)
    o, s, grads = _run(chunk_kda, inputs, chunk_size=chunk_size)
    assert ut_transforms == [expected]
    assert_close("o", o_ref, o, atol=1e-4)
    assert_close("final_state", s_ref, s, atol=1e-4)
    for name in GRAD_NAMES:
        assert_close(f"d{name}", grads_ref[name], grads[name], atol=1e-4)


def test_exact_path_matches_on_moderate_gates(kda_inputs, monkeypatch, ut_transforms):
    """The exact transform on the gates the factored one usually takes: the same outputs and gradients."""
    from frontier.kda import chunk as chunk_module

    inputs = kda_inputs(2, 130, 2, 4, 32, 16, with_state=True)
    factored = _run(chunk_kda, inputs)
    monkeypatch.setattr(chunk_module, "FACTORED_MAX_SPAN", -1.0)
    exact = _run(chunk_kda, inputs)
    assert ut_transforms == ["factored_ut_transform", "exact_ut_transform"]
    assert_close("o", exact[0], factored[0], atol=1e-5)
    assert_close("final_state", exact[1], factored[1], atol=1e-5)
    for name in GRAD_NAMES:
        assert_close(f"d{name}", exact[2][name], factored[2][name], atol=1e-5)


def test_gradcheck_float64_factored(kda_inputs, ut_transforms):
    inputs = kda_inputs(1, 34, 1, 2, 2, 2, with_state=True, dtype=torch.float64)  # two chunks of two blocks
    names = list(inputs)
    leaves = [inputs[n].clone().requires_grad_() for n in names]

    def fn(*tensors):
        return chunk_kda(**dict(zip(names, tensors, strict=True)), output_final_state=True, chunk_size=32)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-5)
    assert set(ut_transforms) == {"factored_ut_transform"}


@pytest.fixture
def inference_calls(monkeypatch):
    """Counts the chunk_kda calls that take the inference path."""
    from frontier.kda import chunk as chunk_module

    calls = []
    original = chunk_module.inference_chunk_kda

    def spy(*args):
        calls.append(args[7:])  # (N, C)
        return original(*args)

    monkeypatch.setattr(chunk_module, "inference_chunk_kda", spy)
    return calls


@pytest.mark.parametrize("with_state", [False, True], ids=["h0-none", "h0"])
@pytest.mark.parametrize(
    ("B", "T", "H", "HV", "K", "V", "tile_matrices"),
    [(2, 1, 2, 2, 16, 16, 64), (2, 2, 2, 4, 16, 8, 64), (2, 63, 2, 2, 32, 16, 64), (2, 64, 1, 3, 16, 24, 64),
     (2, 65, 2, 4, 16, 16, 8), (1, 200, 2, 2, 32, 32, 4), (3, 200, 2, 2, 32, 32, 64)],
    ids=lambda v: str(v),
)  # fmt: skip
def test_inference_path_matches_naive_recurrent(
    kda_inputs, monkeypatch, inference_calls, B, T, H, HV, K, V, tile_matrices, with_state
):
    """Without gradients chunk_kda takes the tiled in-place path; small tiles make a sequence span several of them."""
    from frontier.kda import chunk as chunk_module

    monkeypatch.setattr(chunk_module, "INFERENCE_TILE_MATRICES", tile_matrices)
    inputs = kda_inputs(B, T, H, HV, K, V, with_state)
    o_ref, s_ref = naive_recurrent_kda(**inputs, output_final_state=True)
    with torch.no_grad():
        o, s = chunk_kda(**inputs, output_final_state=True, chunk_size=64 if T < 200 else 16)
    assert len(inference_calls) == 1
    assert_close("o", o_ref, o, atol=1e-4)
    assert_close("final_state", s_ref, s, atol=1e-4)


@pytest.mark.parametrize(("per_token", "inference"), [(-1.99, True), (-2.01, False)])
def test_inference_path_is_taken_within_its_decay_bound(kda_inputs, inference_calls, per_token, inference):
    """A channel decaying by 2 per token spans 128 over a 64-token chunk, the bound; both sides match the reference."""
    inputs = kda_inputs(2, 150, 2, 2, 16, 16, with_state=True)
    inputs["g"][..., 5] = per_token
    o_ref, s_ref = naive_recurrent_kda(**inputs, output_final_state=True)
    with torch.inference_mode():
        o, s = chunk_kda(**inputs, output_final_state=True)
    assert len(inference_calls) == int(inference)
    assert_close("o", o_ref, o, atol=1e-4)
    assert_close("final_state", s_ref, s, atol=1e-4)


def test_inference_path_float64_and_grad_inputs(kda_inputs, inference_calls):
    """float64 stays float64 on the inference path; inputs that need gradients never take it."""
    inputs = kda_inputs(1, 100, 2, 4, 8, 8, with_state=True, dtype=torch.float64)
    o_ref, s_ref = naive_recurrent_kda(**inputs, output_final_state=True)
    o, s = chunk_kda(**inputs, output_final_state=True, chunk_size=32)
    assert o.dtype == s.dtype == torch.float64
    assert_close("o", o_ref, o, atol=1e-10)
    assert_close("final_state", s_ref, s, atol=1e-10)
    assert len(inference_calls) == 1
    _run(chunk_kda, inputs, chunk_size=32)
    assert len(inference_calls) == 1


@pytest.mark.parametrize("layout", ["contiguous", "head-major", "q-is-k"])
def test_inference_path_leaves_the_callers_tensors_alone(kda_inputs, inference_calls, layout):
    """With one head (or head-major views) a chunk view is already contiguous; the in-place path must still copy."""
    inputs = kda_inputs(1, 128, 1, 1, 16, 16, with_state=True)
    if layout == "head-major":  # [B, H, T, D] storage seen through fla's layout
        inputs = {n: t.transpose(1, 2).contiguous().transpose(1, 2) if t.dim() == 4 else t for n, t in inputs.items()}
    if layout == "q-is-k":
        inputs["k"] = inputs["q"]
    before = {n: t.clone() for n, t in inputs.items()}
    o_ref, s_ref = naive_recurrent_kda(**inputs, output_final_state=True)
    with torch.no_grad():
        o, s = chunk_kda(**inputs, output_final_state=True)
    assert len(inference_calls) == 1
    for name, tensor in inputs.items():
        assert torch.equal(tensor, before[name]), f"{name} was modified"
    assert_close("o", o_ref, o, atol=1e-4)
    assert_close("final_state", s_ref, s, atol=1e-4)


def test_inference_path_results_survive_later_calls_in_either_mode(kda_inputs, inference_calls):
    """The path reuses per-thread buffers from call to call: nothing it returns may alias them, and buffers made in
    inference mode (which may not be updated in place outside it) are not reused under no_grad."""
    first = kda_inputs(2, 200, 2, 2, 16, 16, with_state=True)
    second = kda_inputs(1, 70, 2, 4, 16, 16, with_state=False)
    with torch.inference_mode():
        o, s = chunk_kda(**first, output_final_state=True)
    kept = o.clone(), s.clone()
    with torch.no_grad():
        chunk_kda(**second)
        o_again, s_again = chunk_kda(**first, output_final_state=True)
    with torch.inference_mode():
        chunk_kda(**second)
    assert len(inference_calls) == 4
    assert torch.equal(o, kept[0]) and torch.equal(s, kept[1])
    assert torch.equal(o_again, kept[0]) and torch.equal(s_again, kept[1])  # the same numbers, bit for bit


def test_empty_sequence_and_a_tensor_scale(kda_inputs):
    inputs = kda_inputs(2, 0, 2, 2, 16, 16, with_state=True)
    with torch.no_grad():
        o, s = chunk_kda(**inputs, output_final_state=True)
    assert o.shape == (2, 0, 2, 16)
    assert torch.equal(s, inputs["initial_state"])
    with pytest.raises(ConfigError, match="scale must be a number"):
        chunk_kda(**kda_inputs(1, 8, 1, 1, 4, 4, with_state=False), scale=torch.tensor(0.5))
