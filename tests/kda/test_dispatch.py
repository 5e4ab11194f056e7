"""Dispatch: CPU tensors never import fla or Triton; CUDA tensors go to fla's kernel with fla's arguments."""

import subprocess
import sys

import torch

from frontier.kda import chunk_kda, dispatch, fused_recurrent_kda


def test_cpu_call_never_imports_triton_or_fla():
    code = (
        "import sys, torch\n"
        "from frontier.kda import chunk_kda, fused_recurrent_kda\n"
        "x = torch.rand(1, 5, 1, 4)\n"
        "g = -torch.rand(1, 5, 1, 4)\n"
        "b = torch.rand(1, 5, 1)\n"
        "chunk_kda(x, x, x, g, b)\n"
        "fused_recurrent_kda(x, x, x, g, b)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('triton', 'fla')]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_cuda_tensors_are_routed_to_fla_kernels(kda_inputs, monkeypatch):
    calls = []

    def fake_kernel(name):
        def kernel(**kwargs):
            calls.append((name, kwargs))
            return kwargs["v"] * 0, kwargs["initial_state"]

        return kernel

    monkeypatch.setattr(dispatch, "fla_kernel", lambda name, q: fake_kernel(name))
    inputs = kda_inputs(1, 4, 1, 1, 8, 8, with_state=True)
    chunk_kda(**inputs, output_final_state=True)
    state = inputs["initial_state"].clone()
    fused_recurrent_kda(**{**inputs, "initial_state": state}, inplace_final_state=True)
    assert [name for name, _ in calls] == ["chunk_kda", "fused_recurrent_kda"]
    for _, kwargs in calls:
        assert set(kwargs) == {"q", "k", "v", "g", "beta", "scale", "initial_state", "output_final_state"}
        assert kwargs["initial_state"].dtype == torch.float32


def test_non_default_chunk_size_stays_on_the_torch_path(kda_inputs, monkeypatch):
    monkeypatch.setattr(dispatch, "fla_kernel", lambda name, q: (_ for _ in ()).throw(AssertionError(name)))
    chunk_kda(**kda_inputs(1, 4, 1, 1, 8, 8, with_state=False), chunk_size=32)
