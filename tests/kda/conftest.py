"""KDA test inputs in fla's layout, drawn as fla's tests draw them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from frontier.errors import BackendUnavailableError
from frontier.kda.dispatch import load_fla_naive


def make_kda_inputs(
    B: int, T: int, H: int, HV: int, K: int, V: int, with_state: bool, dtype=torch.float32, seed: int = 0
) -> dict:
    """q, k ~ U(0, 1) then L2-normalised; g = logsigmoid(randn) (≤ 0); beta = sigmoid(randn); state ~ randn."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "q": F.normalize(torch.rand(B, T, H, K, generator=gen, dtype=dtype), dim=-1),
        "k": F.normalize(torch.rand(B, T, H, K, generator=gen, dtype=dtype), dim=-1),
        "v": torch.randn(B, T, HV, V, generator=gen, dtype=dtype),
        "g": F.logsigmoid(torch.randn(B, T, HV, K, generator=gen, dtype=dtype)),
        "beta": torch.sigmoid(torch.randn(B, T, HV, generator=gen, dtype=dtype)),
        "initial_state": torch.randn(B, HV, K, V, generator=gen, dtype=dtype) if with_state else None,
    }


@pytest.fixture(scope="session")
def fla_naive():
    """fla's own naive.py, loaded by path (never through `fla.ops`, which would import Triton)."""
    try:
        return load_fla_naive()
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def kda_inputs():
    """The `make_kda_inputs` factory, as a fixture so test modules need no import path tricks."""
    return make_kda_inputs
