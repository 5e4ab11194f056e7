import pytest
import torch

from frontier.autodeco.loss import AutoDecoLossConfig, autodeco_loss
from frontier.errors import ConfigError, ShapeError


def _batch(seed=0, B=2, T=10, V=30):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=gen) * 3
    labels = torch.randint(V, (B, T), generator=gen)
    labels[:, :4] = -100  # the prompt
    temperature = torch.full((B, T, 1), 0.8, requires_grad=True)
    top_p = torch.full((B, T, 1), 0.7, requires_grad=True)
    return logits, temperature, top_p, labels


def test_both_terms_give_gradients_to_both_heads_outputs():
    logits, temperature, top_p, labels = _batch()
    loss, parts = autodeco_loss(logits, temperature, top_p, labels, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert set(parts) == {"temperature", "top_p"} and torch.isfinite(loss)
    assert temperature.grad.abs().sum() > 0 and top_p.grad.abs().sum() > 0
    assert temperature.grad[:, :3].abs().sum() == 0  # positions predicting prompt tokens teach nothing


def test_temperature_term_without_tricks_is_plain_cross_entropy():
    logits, temperature, top_p, labels = _batch()
    config = AutoDecoLossConfig(train_top_p=False, dft_weighting=False, easy_token_drop=0.0)
    loss, _ = autodeco_loss(logits, temperature, top_p, labels, config)
    expected = torch.nn.functional.cross_entropy(
        (logits[:, :-1] / 0.8).flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100
    )
    torch.testing.assert_close(loss, expected)


def test_dft_weighting_and_easy_token_drop_change_the_loss():
    logits, temperature, top_p, labels = _batch()
    labels[:, 5:] = logits[:, 4:-1].argmax(-1)[:, :5]  # make some tokens "easy": the base already predicts them
    losses = {
        name: autodeco_loss(logits, temperature, top_p, labels, cfg, torch.Generator().manual_seed(1))[0].item()
        for name, cfg in {
            "plain": AutoDecoLossConfig(dft_weighting=False, easy_token_drop=0.0),
            "dft": AutoDecoLossConfig(dft_weighting=True, easy_token_drop=0.0),
            "drop": AutoDecoLossConfig(dft_weighting=False, easy_token_drop=0.6),
        }.items()
    }
    assert len(set(losses.values())) == 3


@pytest.mark.parametrize(("kwargs", "match"), [({"train_temperature": False, "train_top_p": False}, "at least one"),
                                               ({"easy_token_drop": 1.0}, "easy_token_drop")])  # fmt: skip
def test_bad_configs(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AutoDecoLossConfig(**kwargs)


def test_shape_errors():
    logits, temperature, top_p, labels = _batch()
    with pytest.raises(ShapeError, match="must share"):
        autodeco_loss(logits, temperature[:, :5], top_p, labels)
    with pytest.raises(ShapeError, match="no token"):
        autodeco_loss(logits, temperature, top_p, torch.full_like(labels, -100))
