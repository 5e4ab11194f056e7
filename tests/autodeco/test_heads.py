import math

import pytest
import torch

from frontier.autodeco.heads import TemperatureHead, TopPHead, distribution_statistics, head_parameter_count


@pytest.mark.parametrize("hidden", [64, 576])
def test_parameter_count_matches_the_paper_formula(hidden):
    assert head_parameter_count(hidden) == 512 * hidden + 2306


def test_outputs_stay_in_range_even_for_extreme_inputs():
    torch.manual_seed(0)
    t_head, p_head = TemperatureHead(32), TopPHead(32)
    hidden = torch.randn(3, 7, 32) * torch.tensor([1.0, 100.0, 1e4])[:, None, None]
    logits = torch.randn(3, 7, 50) * 50
    temperature = t_head(hidden)
    top_p = p_head(hidden, temperature, logits)
    assert temperature.shape == top_p.shape == (3, 7, 1)
    assert ((temperature >= 0) & (temperature <= 2)).all() and ((top_p >= 0) & (top_p <= 1)).all()


def test_untrained_heads_start_near_T1_p_half():
    torch.manual_seed(0)
    hidden = torch.randn(100, 64) * 0.1
    temperature = TemperatureHead(64)(hidden)
    top_p = TopPHead(64)(hidden, temperature, torch.randn(100, 20))
    assert abs(temperature.mean().item() - 1) < 0.2 and abs(top_p.mean().item() - 0.5) < 0.2


def test_statistics_of_a_uniform_distribution():
    stats = distribution_statistics(torch.zeros(2, 40), torch.ones(2, 1))
    expected = torch.tensor([1 / 40, math.log(40), 0.0, 5 / 40])
    torch.testing.assert_close(stats, expected.expand(2, 4), atol=1e-5, rtol=1e-5)


def test_statistics_follow_the_temperature():
    logits = torch.tensor([[4.0, 1.0, 0.0, -1.0]])
    cold = distribution_statistics(logits, torch.tensor([[0.1]]))
    hot = distribution_statistics(logits, torch.tensor([[5.0]]))
    assert cold[0, 0] > 0.99 and hot[0, 0] < 0.5 and hot[0, 1] > cold[0, 1]


def test_state_dict_names_match_the_released_heads():
    names = set(TemperatureHead(8).state_dict()) | {f"p:{k}" for k in TopPHead(8).state_dict()}
    assert names == {"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
                     "p:mlp.0.weight", "p:mlp.0.bias", "p:mlp.2.weight", "p:mlp.2.bias"}  # fmt: skip
