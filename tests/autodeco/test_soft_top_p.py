"""soft_top_p: the properties the paper's training relies on, checked on generated distributions (hypothesis)."""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from frontier.autodeco.soft_top_p import soft_top_p
from frontier.errors import ConfigError
from frontier.models.sampling import hard_top_p_mask


def _distribution(seed: int, vocab: int, sharpness: float) -> torch.Tensor:
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(seed)) * sharpness
    return torch.softmax(logits.double(), -1).float()


distributions = st.builds(
    _distribution, st.integers(0, 10_000), st.integers(2, 300), st.floats(0.0, 8.0, allow_nan=False)
)
top_ps = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(probs=distributions, p=top_ps)
def test_tokens_inside_the_nucleus_keep_their_relative_mass(probs, p):
    out = soft_top_p(probs, p)
    inside = probs.sort(descending=True).values.cumsum(0) <= p
    sorted_out = out[probs.argsort(descending=True)]
    sorted_in = probs.sort(descending=True).values
    if inside.sum() >= 2:
        ratios = sorted_out[inside] / sorted_in[inside]
        torch.testing.assert_close(ratios, ratios[:1].expand_as(ratios), rtol=1e-4, atol=0)
    assert torch.isfinite(out).all() and (out >= 0).all() and out.sum() <= 1 + 1e-5


@settings(max_examples=60, deadline=None)
@given(probs=distributions, p=st.floats(0.05, 1.0))
def test_output_is_a_distribution_when_the_top_token_fits(probs, p):
    assume(probs.max() <= p)
    torch.testing.assert_close(soft_top_p(probs, p).sum(), torch.tensor(1.0), atol=1e-5, rtol=0)


@settings(max_examples=60, deadline=None)
@given(probs=distributions, p=st.floats(0.01, 0.99))
def test_approaches_hard_top_p_as_steepness_grows(probs, p):
    cumulative = probs.sort(descending=True).values.cumsum(0)
    assume(((cumulative - p).abs() > 1e-3).all())  # no token sits on the edge of the nucleus
    assume(probs.max() < p)  # the inclusive nucleus is not empty
    limit = soft_top_p(probs, p, steepness=1e5)
    inclusive_nucleus = torch.zeros_like(probs, dtype=torch.bool)
    inclusive_nucleus[probs.argsort(descending=True)[cumulative <= p]] = True
    expected = torch.where(inclusive_nucleus, probs, 0)
    torch.testing.assert_close(limit, expected / expected.sum(), atol=1e-5, rtol=0)
    # hard top-p keeps the same tokens plus, at most, the one that crosses p
    hard = hard_top_p_mask(probs, p)
    assert (hard | ~inclusive_nucleus).all() and 0 <= int(hard.sum() - inclusive_nucleus.sum()) <= 1


@pytest.mark.parametrize("p", [0.0, 1e-12, 0.5, 1 - 1e-7, 1.0])
@pytest.mark.parametrize("kind", ["one-hot", "uniform", "peaked", "bf16"])
def test_no_nan_or_inf_at_the_extremes(kind, p):
    vocab = 64
    probs = {
        "one-hot": torch.nn.functional.one_hot(torch.tensor(3), vocab).float(),
        "uniform": torch.full((vocab,), 1 / vocab),
        "peaked": torch.softmax(torch.arange(vocab).float() * 3, -1),
        "bf16": torch.softmax(torch.randn(vocab), -1).bfloat16(),
    }[kind].requires_grad_()
    top_p = torch.tensor(p, requires_grad=True)
    out = soft_top_p(probs, top_p)
    assert out.dtype == probs.dtype and torch.isfinite(out).all()
    (-(out.float() + 1e-9).log()[3]).backward()
    assert torch.isfinite(probs.grad).all() and torch.isfinite(top_p.grad).all()


def test_gradient_reaches_top_p_and_the_logits():
    logits = torch.randn(4, 50, requires_grad=True)
    top_p = torch.full((4,), 0.6, requires_grad=True)
    out = soft_top_p(torch.softmax(logits, -1), top_p)
    (-(out[torch.arange(4), torch.tensor([0, 1, 2, 3])] + 1e-9).log()).sum().backward()
    assert top_p.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0


def test_batched_top_p_shapes():
    probs = torch.softmax(torch.randn(2, 3, 10), -1)
    assert soft_top_p(probs, torch.rand(2, 3)).shape == (2, 3, 10)
    assert soft_top_p(probs, torch.rand(2, 3, 1)).shape == (2, 3, 10)


def test_hard_mask_matches_a_loop():
    probs = _distribution(1, 30, 2.0)
    for p in (0.1, 0.5, 0.9, 1.0):
        order = probs.argsort(descending=True).tolist()
        keep, mass = set(), 0.0
        for token in order:
            keep.add(token)
            mass += probs[token].item()
            if mass >= p:
                break
        assert set(hard_top_p_mask(probs, p).nonzero().flatten().tolist()) == keep


def test_steepness_must_be_positive():
    with pytest.raises(ConfigError, match="steepness"):
        soft_top_p(torch.ones(3) / 3, 0.5, steepness=0)


def test_mass_outside_fades_with_distance():
    probs = torch.tensor([0.5, 0.3, 0.2])
    out = soft_top_p(probs, 0.5, steepness=30.0)
    weights = out / probs / (out[0] / probs[0])
    torch.testing.assert_close(weights, torch.tensor([1.0, math.exp(-30 * 0.3), math.exp(-30 * 0.5)]))
