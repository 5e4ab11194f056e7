"""fused_recurrent_kda (decoding) against the reference, including one-token steps on an in-place state."""

import pytest
import torch

from frontier.errors import ConfigError
from frontier.kda import fused_recurrent_kda, naive_recurrent_kda
from frontier.testing import assert_close


@pytest.mark.parametrize("with_state", [False, True], ids=["h0-none", "h0"])
@pytest.mark.parametrize(("T", "H", "HV"), [(1, 2, 2), (37, 2, 4), (100, 1, 3)], ids=lambda v: str(v))
def test_fused_recurrent_matches_naive(kda_inputs, T, H, HV, with_state):
    inputs = kda_inputs(2, T, H, HV, 16, 8, with_state)
    o_ref, s_ref = naive_recurrent_kda(**inputs, output_final_state=True)
    o, s = fused_recurrent_kda(**inputs, output_final_state=True)
    assert_close("o", o_ref, o, atol=1e-5)
    assert_close("final_state", s_ref, s, atol=1e-5)


def test_fused_recurrent_matches_fla_naive_recurrent(kda_inputs, fla_naive):
    inputs = kda_inputs(2, 37, 2, 4, 16, 8, with_state=True)
    o_fla, s_fla = fla_naive.naive_recurrent_kda(**inputs, output_final_state=True)
    o, s = fused_recurrent_kda(**inputs, output_final_state=True)
    assert_close("o", o_fla, o, atol=1e-5)
    assert_close("final_state", s_fla, s, atol=1e-5)


def test_one_token_steps_update_the_state_in_place(kda_inputs):
    inputs = kda_inputs(2, 20, 2, 4, 16, 8, with_state=True)
    o_ref, s_ref = naive_recurrent_kda(**inputs, output_final_state=True)
    state = inputs["initial_state"].clone()
    address = state.data_ptr()
    step = {n: inputs[n] for n in ("q", "k", "v", "g", "beta")}
    for t in range(20):
        o_t, returned = fused_recurrent_kda(
            **{n: x[:, t : t + 1] for n, x in step.items()}, initial_state=state, inplace_final_state=True
        )
        assert returned is state and state.data_ptr() == address
        assert_close(f"o[{t}]", o_ref[:, t : t + 1], o_t, atol=1e-5)
    assert_close("final_state", s_ref, state, atol=1e-5)


def test_caller_state_is_untouched_without_inplace(kda_inputs):
    inputs = kda_inputs(1, 5, 1, 1, 8, 8, with_state=True)
    before = inputs["initial_state"].clone()
    fused_recurrent_kda(**inputs, output_final_state=True)
    assert torch.equal(before, inputs["initial_state"])


def test_inplace_needs_a_float32_buffer(kda_inputs):
    inputs = kda_inputs(1, 2, 1, 1, 8, 8, with_state=False)
    with pytest.raises(ConfigError, match="initial_state"):
        fused_recurrent_kda(**inputs, inplace_final_state=True)


def test_refuses_to_silently_drop_gradients(kda_inputs):
    inputs = kda_inputs(1, 3, 1, 1, 8, 8, with_state=False)
    inputs["v"].requires_grad_()
    with pytest.raises(ConfigError, match="chunk_kda"):
        fused_recurrent_kda(**inputs)
