"""Head training on cached features: it learns, only the heads change, and an interrupted run resumes exactly."""

import pytest
import torch

from frontier.autodeco.modeling import AutoDecoForCausalLM
from frontier.autodeco.training import Example, TrainConfig, cache_features, train_heads
from frontier.errors import ConfigError


def _features(model, n=6, length=20):
    gen = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(n):
        ids = torch.randint(3, 128, (length,), generator=gen)
        labels = ids.clone()
        labels[:8] = -100
        examples.append(Example(ids, labels))
    return cache_features(model, examples)


def test_training_lowers_the_loss_and_touches_only_the_heads(tiny_llama, tmp_path):
    torch.manual_seed(0)
    model = AutoDecoForCausalLM(tiny_llama())
    base_before = {k: v.clone() for k, v in model.base_model.state_dict().items()}
    history = train_heads(model, _features(model), TrainConfig(steps=40, batch_size=4, learning_rate=3e-3),
                          tmp_path, progress=False)  # fmt: skip
    first = sum(h["temperature"] + h["top_p"] for h in history[:5])
    last = sum(h["temperature"] + h["top_p"] for h in history[-5:])
    assert last < first
    assert all(torch.equal(v, model.base_model.state_dict()[k]) for k, v in base_before.items())
    assert (tmp_path / "checkpoint-40" / "trainer_state.json").is_file()


def test_interrupted_run_resumes_to_the_same_heads(tiny_llama, tmp_path):
    def run(folder, steps):
        torch.manual_seed(0)
        model = AutoDecoForCausalLM(tiny_llama())
        config = TrainConfig(steps=steps, batch_size=3, learning_rate=1e-3, checkpoint_every=5)
        train_heads(model, _features(model), config, folder, progress=False)
        return model

    straight = run(tmp_path / "straight", 10)
    run(tmp_path / "resumed", 5)  # "interrupted" after the checkpoint at step 5
    resumed = run(tmp_path / "resumed", 10)
    for a, b in zip(straight.head_parameters(), resumed.head_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_bad_training_config():
    with pytest.raises(ConfigError, match="positive"):
        TrainConfig(steps=0)


def test_encode_examples_learns_only_the_answer(embedded_model):
    from frontier.autodeco.training import encode_examples

    _, tokenizer = embedded_model
    (example,) = encode_examples(tokenizer, [{"prompt": "What is 2+3?", "completion": "5"}])
    learned = example.labels[example.labels != -100]
    assert tokenizer.decode(learned) == "5" + tokenizer.eos_token
    assert tokenizer.decode(example.input_ids).rstrip().endswith("<|im_start|>assistant\n5" + tokenizer.eos_token)
    with pytest.raises(ConfigError, match="example 0 needs"):
        encode_examples(tokenizer, [{"prompt": "x"}])
