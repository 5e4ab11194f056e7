"""kda_gate: both of fla's gate formulas, checked against their one-line definitions, and their ranges."""

import pytest
import torch
import torch.nn.functional as F

from frontier.errors import ConfigError, ShapeError
from frontier.kda import kda_gate


def _inputs(H=3, K=4):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, H, K, generator=gen) * 4
    A_log = torch.log(torch.empty(H).uniform_(1, 16, generator=gen))
    dt_bias = torch.randn(H * K, generator=gen)
    return x, A_log, dt_bias


def test_softplus_gate_matches_definition():
    x, A_log, dt_bias = _inputs()
    expected = -A_log.exp()[:, None] * F.softplus(x + dt_bias.view(3, 4))
    torch.testing.assert_close(kda_gate(x, A_log, dt_bias), expected)
    assert (kda_gate(x, A_log, dt_bias) <= 0).all()


def test_lower_bound_gate_matches_definition_and_range():
    x, A_log, dt_bias = _inputs()
    g = kda_gate(x, A_log, dt_bias, lower_bound=-5.0)
    torch.testing.assert_close(g, -5.0 * torch.sigmoid(A_log.exp()[:, None] * (x + dt_bias.view(3, 4))))
    assert ((g >= -5.0) & (g <= 0)).all()
    g_no_a = kda_gate(x, None, dt_bias, lower_bound=-5.0)
    torch.testing.assert_close(g_no_a, -5.0 * torch.sigmoid(x + dt_bias.view(3, 4)))


def test_output_is_float32_for_bf16_input():
    x, A_log, dt_bias = _inputs()
    assert kda_gate(x.bfloat16(), A_log, dt_bias).dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"A_log": torch.zeros(2)}, ShapeError, "expected 3"),
        ({"dt_bias": torch.zeros(5)}, ShapeError, r"H \* K = 3 \* 4 = 12"),
        ({"A_log": None}, ConfigError, "needs A_log"),
        ({"lower_bound": 1.0}, ConfigError, "must be negative"),
    ],
    ids=["A_log-shape", "dt_bias-shape", "no-A_log", "positive-bound"],
)
def test_bad_gate_inputs(kwargs, error, match):
    x, A_log, dt_bias = _inputs()
    args = {"A_log": A_log, "dt_bias": dt_bias} | kwargs
    with pytest.raises(error, match=match):
        kda_gate(x, **args)
