"""Natural-language control: the effect report, and targeted training that orders high > none > low."""

from __future__ import annotations

import pytest
import torch

from frontier.autodeco.control import (
    HIGH_DIVERSITY,
    LOW_DIVERSITY,
    control_effect,
    control_features,
    train_control,
    with_command,
)
from frontier.autodeco.modeling import AutoDecoForCausalLM
from frontier.errors import ConfigError

PAIRS = [{"prompt": f"What is {a} + {b}?", "completion": f"The answer is {a + b}."} for a, b in
         [(2, 3), (10, 4), (7, 7), (1, 9), (12, 30), (5, 6)]]  # fmt: skip


def test_commands_are_appended():
    assert with_command("Q?", "none") == "Q?"
    assert with_command("Q?", "high") == f"Q? {HIGH_DIVERSITY}"
    assert with_command("Q?", "low") == f"Q? {LOW_DIVERSITY}"
    with pytest.raises(ConfigError, match="unknown control variant"):
        with_command("Q?", "medium")


def test_targeted_training_makes_the_commands_work(embedded_model):
    base, tokenizer = embedded_model
    torch.manual_seed(0)
    model = AutoDecoForCausalLM(base)
    features = control_features(model, tokenizer, PAIRS)
    before = control_effect(model, features)
    assert before["prompts"] == len(PAIRS)
    for key in ("temperature", "top_p"):
        assert 0 <= before[f"{key}_high_consistency"] <= 1
    history = train_control(model, features, steps=40, batch_size=6, learning_rate=3e-3, margin=0.05, progress=False)
    after = control_effect(model, features)
    assert history[-1] < history[0]
    for key in ("temperature", "top_p"):
        assert after[f"{key}_high_consistency"] == 1.0 and after[f"{key}_low_consistency"] == 1.0
        assert after[f"{key}_low"] < after[f"{key}_none"] < after[f"{key}_high"]


def test_consistency_is_an_exact_share_of_prompts(tiny_llama, monkeypatch):
    """95 of 100 prompts is 0.95, not float32's 0.9499999: the experiment's ≥ 95% bar must see it as met."""
    import frontier.autodeco.control as control

    # Each feature's "hidden state" is the (T̂, P̂) its prompt's mean prediction should be.
    monkeypatch.setattr(control, "_mean_predictions", lambda heads, lm_head, hidden, labels: tuple(hidden))
    none = [(torch.tensor([0.5, 0.5]), None)] * 100
    high = [(torch.tensor([0.6, 0.6]), None)] * 95 + [(torch.tensor([0.4, 0.4]), None)] * 5
    features = control.ControlFeatures({"none": none, "high": high, "low": none})

    report = control_effect(AutoDecoForCausalLM(tiny_llama()), features)

    assert report["temperature_high_consistency"] == 0.95 and report["top_p_high_consistency"] == 0.95
    assert report["temperature_low_consistency"] == 0.0 and report["prompts"] == 100
