"""compiled_chunk_kda (chunk_kda's parallel stages under torch.compile) against the token-by-token reference."""

from __future__ import annotations

import pytest
import torch

from frontier.errors import BackendUnavailableError
from frontier.kda import compiled as compiled_module
from frontier.kda import naive_recurrent_kda
from frontier.kda.compiled import compiled_chunk_kda, cpp_compiler
from frontier.testing import assert_close

needs_compiler = pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile's CPU backend needs a C++ compiler")


@needs_compiler
@pytest.mark.parametrize("gate_scale", [1, 200], ids=["factored-path", "exact-path"])
def test_compiled_matches_naive_recurrent_with_gradients(kda_inputs, gate_scale):
    """One compile each (about 10-20 s): a padded tail chunk, grouped value heads, an initial state, every gradient;
    fla's test gates take the factored transform, 200 times stronger ones the exact transform."""
    inputs = kda_inputs(2, 130, 2, 4, 16, 8, with_state=True)
    inputs["g"] = inputs["g"] * gate_scale
    results = []
    for op in (naive_recurrent_kda, compiled_chunk_kda):
        leaves = {n: t.clone().requires_grad_() for n, t in inputs.items()}
        o, final = op(**leaves, output_final_state=True)
        gen = torch.Generator().manual_seed(1)
        loss = (o * torch.randn(o.shape, generator=gen)).sum() + (final * torch.randn(final.shape, generator=gen)).sum()
        loss.backward()
        results.append((o, final, {n: t.grad for n, t in leaves.items()}))
    (o_ref, s_ref, grads_ref), (o, s, grads) = results
    assert_close("o", o_ref, o, atol=1e-4)
    assert_close("final_state", s_ref, s, atol=1e-4)
    for name, grad in grads_ref.items():
        assert_close(f"d{name}", grad, grads[name], atol=1e-4)


def test_missing_compiler_is_a_clear_error(kda_inputs, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    compiled_module._compiled_stages.cache_clear()
    try:
        with pytest.raises(BackendUnavailableError, match=r"C\+\+ compiler.*chunk_kda"):
            compiled_chunk_kda(**kda_inputs(1, 8, 1, 1, 16, 16, with_state=False))
    finally:
        compiled_module._compiled_stages.cache_clear()
