"""On a CUDA machine with flash-linear-attention: what `frontier.kda` dispatches to (fla's Triton kernels) agrees with
our PyTorch ops, values and gradients. Skipped where there is no GPU (CI); `pytest -k cuda` runs these and the
model's CUDA tests.
"""

from __future__ import annotations

import pytest
import torch

from frontier.kda import chunk as torch_chunk
from frontier.kda import chunk_kda, dispatch, fused_recurrent_kda
from frontier.kda import recurrent as torch_recurrent
from frontier.testing import assert_rms_close

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and dispatch.fla_triton_installed()),
    reason="needs a CUDA GPU with flash-linear-attention and triton installed",
)
RMS_RATIO = 5e-3  # fla's own tolerance for its kernels against its references


def cuda_inputs(kda_inputs, B, T, H, HV, K, V, with_state) -> dict:
    return {
        name: None if x is None else x.cuda().requires_grad_()
        for name, x in kda_inputs(B, T, H, HV, K, V, with_state).items()
    }


def test_cuda_dispatch_picks_fla_kernels():
    q = torch.zeros(1, 1, 1, 1, device="cuda")
    assert dispatch.fla_kernel("chunk_kda", q).__module__.startswith("fla.ops.kda")
    assert dispatch.fla_kernel("fused_recurrent_kda", q).__module__.startswith("fla.ops.kda")


# Each new (heads, initial state) combination makes Triton compile and autotune fla's forward and backward kernels
# afresh, minutes on a cold cache (seen on an H200): two combinations, lengths around and across chunk borders.
@pytest.mark.parametrize(
    "T,H,HV,with_state", [(65, 2, 4, True), (200, 2, 4, True), (1000, 2, 4, True), (63, 2, 2, False)]
)
def test_cuda_chunk_kda_matches_torch_values_and_gradients(kda_inputs, T, H, HV, with_state):
    inputs = cuda_inputs(kda_inputs, 2, T, H, HV, 64, 64, with_state)
    grad_o = torch.randn(2, T, HV, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    grad_state = torch.randn(2, HV, 64, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(2))
    results = {}
    for name, op in (("fla", chunk_kda), ("torch", torch_chunk.chunk_kda)):
        o, state = op(**inputs, output_final_state=True)
        leaves = [x for x in inputs.values() if x is not None]
        grads = torch.autograd.grad((o * grad_o).sum() + (state * grad_state).sum(), leaves)
        results[name] = (o, state, grads)
    (o_fla, state_fla, grads_fla), (o_ref, state_ref, grads_ref) = results["fla"], results["torch"]
    assert_rms_close("o", o_ref, o_fla, RMS_RATIO)
    assert_rms_close("final_state", state_ref, state_fla, RMS_RATIO)
    names = [name for name, x in inputs.items() if x is not None]
    for name, ref, out in zip(names, grads_ref, grads_fla, strict=True):
        assert_rms_close(f"d{name}", ref, out, RMS_RATIO)


def test_cuda_fused_recurrent_step_updates_the_state_in_place(kda_inputs):
    inputs = {k: v.cuda() for k, v in kda_inputs(3, 1, 2, 4, 64, 64, with_state=True).items()}
    state_fla, state_ref = inputs["initial_state"].clone(), inputs["initial_state"].clone()
    o_fla, returned = fused_recurrent_kda(**{**inputs, "initial_state": state_fla}, inplace_final_state=True)
    o_ref, _ = torch_recurrent.fused_recurrent_kda(**{**inputs, "initial_state": state_ref}, inplace_final_state=True)
    assert returned.data_ptr() == state_fla.data_ptr()
    assert_rms_close("o", o_ref, o_fla, RMS_RATIO)
    assert_rms_close("state", state_ref, state_fla, RMS_RATIO)
