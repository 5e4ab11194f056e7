"""Chat generation with the embedded model: input checks, left padding, seeding and a real answer."""

import pytest
import torch

from frontier.errors import ConfigError
from frontier.models import SamplingSettings, chat_inputs, generate_chat


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_new_tokens": 0},
        {"max_new_tokens": -5},
        {"temperature": -0.1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"temperature": float("nan")},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_sampling_settings_reject_out_of_range_values(kwargs):
    with pytest.raises(ConfigError):
        SamplingSettings(**kwargs)


def test_empty_prompt_is_refused(embedded_model):
    _, tokenizer = embedded_model
    with pytest.raises(ConfigError, match="prompt 1 is empty"):
        chat_inputs(tokenizer, ["hi", "   "])


def test_batches_are_left_padded_and_use_the_chat_template(embedded_model):
    _, tokenizer = embedded_model
    batch = chat_inputs(tokenizer, ["Hi", "Tell me a long story about a very old lighthouse keeper"])
    mask = batch["attention_mask"]
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and mask[1].all()
    text = tokenizer.decode(batch["input_ids"][1], skip_special_tokens=False)
    assert "<|im_start|>user" in text and text.rstrip().endswith("<|im_start|>assistant")


def test_answers_the_capital_of_france(embedded_model):
    model, tokenizer = embedded_model
    (answer,) = generate_chat(model, tokenizer, ["What is the capital of France?"], SamplingSettings(24))
    assert "Paris" in answer


def test_batched_greedy_matches_one_prompt_at_a_time(embedded_model):
    model, tokenizer = embedded_model
    prompts = ["What is 2 plus 2?", "Name a colour of the sky on a clear day."]
    settings = SamplingSettings(max_new_tokens=8)
    batched = generate_chat(model, tokenizer, prompts, settings)
    single = [generate_chat(model, tokenizer, [p], settings)[0] for p in prompts]
    assert batched == single


def test_sampling_is_reproducible_with_a_seed(embedded_model):
    model, tokenizer = embedded_model
    settings = SamplingSettings(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=123)
    first = generate_chat(model, tokenizer, ["Write a word."], settings)
    torch.manual_seed(999)  # the seed in the settings must win over the global state
    assert generate_chat(model, tokenizer, ["Write a word."], settings) == first
