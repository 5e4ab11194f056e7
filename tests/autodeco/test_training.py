"""Head training on cached or streamed features: it learns, only the heads change, an interrupted run resumes
exactly, and streaming trains the same heads as the cache."""

import pytest
import torch

from frontier.autodeco.modeling import AutoDecoForCausalLM
from frontier.autodeco.training import (
    Example,
    StreamedFeatures,
    TrainConfig,
    cache_features,
    features_fingerprint,
    train_heads,
)
from frontier.errors import ConfigError


def _examples(n=6, lengths=(20,)):
    gen = torch.Generator().manual_seed(0)
    examples = []
    for i in range(n):
        ids = torch.randint(3, 128, (lengths[i % len(lengths)],), generator=gen)
        labels = ids.clone()
        labels[:8] = -100
        examples.append(Example(ids, labels))
    return examples


def _features(model, n=6, length=20):
    return cache_features(model, _examples(n, (length,)))


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


@pytest.mark.parametrize("trained, frozen", [("top_p", "temp_head"), ("temperature", "top_p_head")])
def test_training_one_head_leaves_the_other_unchanged(tiny_llama, tmp_path, trained, frozen):
    from frontier.autodeco.loss import AutoDecoLossConfig

    torch.manual_seed(0)
    model = AutoDecoForCausalLM(tiny_llama())
    before = {k: v.clone() for k, v in getattr(model, frozen).state_dict().items()}
    loss = AutoDecoLossConfig(train_temperature=trained == "temperature", train_top_p=trained == "top_p")
    config = TrainConfig(steps=5, batch_size=3, learning_rate=1e-2, loss=loss)
    train_heads(model, _features(model), config, tmp_path, progress=False)
    after = getattr(model, frozen).state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert all(p.requires_grad for p in model.head_parameters())  # frozen for the run only


def test_a_switched_off_head_cannot_be_trained(tiny_llama, tmp_path):
    from frontier.autodeco.loss import AutoDecoLossConfig

    model = AutoDecoForCausalLM(tiny_llama(), enable_top_p_head=False)
    with pytest.raises(ConfigError, match="top_p head is switched off"):
        train_heads(model, _features(model), TrainConfig(steps=2, batch_size=3), tmp_path, progress=False)
    only_temperature = TrainConfig(
        steps=2, batch_size=3, checkpoint_every=2, loss=AutoDecoLossConfig(train_top_p=False)
    )
    assert len(train_heads(model, _features(model), only_temperature, tmp_path, progress=False)) == 2
    both_on = AutoDecoForCausalLM(model.base_model)  # the same run resumed with the top-p head on: refused
    longer = TrainConfig(steps=4, batch_size=3, checkpoint_every=2, loss=AutoDecoLossConfig(train_top_p=False))
    with pytest.raises(ConfigError, match="switched off: enable_top_p_head, now: none"):
        train_heads(both_on, _features(both_on), longer, tmp_path, progress=False)


def test_resume_refuses_other_settings_or_data_but_takes_more_steps(tiny_llama, tmp_path):
    torch.manual_seed(0)
    model = AutoDecoForCausalLM(tiny_llama())
    features = _features(model)
    train_heads(model, features, TrainConfig(steps=2, batch_size=3, checkpoint_every=2), tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"learning_rate: 0\.0001 then, 0\.05 now"):
        train_heads(model, features, TrainConfig(steps=4, batch_size=3, learning_rate=5e-2), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="other data"):
        train_heads(model, features[:-1], TrainConfig(steps=4, batch_size=3), tmp_path, progress=False)
    history = train_heads(model, features, TrainConfig(steps=4, batch_size=3), tmp_path, progress=False)
    assert len(history) == 2  # steps 3 and 4, resumed from the checkpoint at step 2


def test_streamed_features_train_the_same_heads_as_cached_ones_and_resume_them(tiny_llama, tmp_path):
    examples = _examples(n=7, lengths=(12, 20, 31))  # unequal lengths: the cache pads its batches, streaming does not

    def run(features_of, folder, steps):
        torch.manual_seed(0)
        model = AutoDecoForCausalLM(tiny_llama())
        features = features_of(model)
        config = TrainConfig(steps=steps, batch_size=3, learning_rate=3e-3, checkpoint_every=4)
        train_heads(model, features, config, folder, progress=False)
        return model, features

    cached, cached_features = run(lambda m: cache_features(m, examples), tmp_path / "cached", 8)
    streamed, streamed_features = run(lambda m: StreamedFeatures(m, examples), tmp_path / "streamed", 8)
    assert isinstance(streamed_features, StreamedFeatures) and len(streamed_features) == len(examples)
    for (hidden_a, labels_a), (hidden_b, labels_b) in zip(cached_features, streamed_features, strict=True):
        torch.testing.assert_close(hidden_a, hidden_b, atol=1e-5, rtol=1e-5)
        assert torch.equal(labels_a, labels_b)
    assert features_fingerprint(cached_features) == features_fingerprint(streamed_features)
    for a, b in zip(cached.head_parameters(), streamed.head_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)

    run(lambda m: cache_features(m, examples), tmp_path / "switched", 4)
    switched, _ = run(lambda m: StreamedFeatures(m, examples), tmp_path / "switched", 8)  # resumes at step 4
    for a, b in zip(cached.head_parameters(), switched.head_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_streaming_runs_the_base_once_per_example_per_step(tiny_llama, tmp_path, monkeypatch):
    model = AutoDecoForCausalLM(tiny_llama())
    calls = []
    forward = model.base_forward
    monkeypatch.setattr(model, "base_forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    train_heads(model, StreamedFeatures(model, _examples(n=6)), TrainConfig(steps=2, batch_size=3), tmp_path,
                progress=False)  # fmt: skip
    assert len(calls) == 2 * 3


def test_streamed_features_refuse_examples_that_cannot_be_windowed(tiny_llama):
    model = AutoDecoForCausalLM(tiny_llama())
    ids = torch.arange(3, 13)
    with pytest.raises(ConfigError, match="no completion tokens"):
        StreamedFeatures(model, [Example(ids, torch.full_like(ids, -100))])
    with pytest.raises(ConfigError, match="at least one prompt token"):  # nothing before the first learned token
        StreamedFeatures(model, [Example(ids, ids.clone())])


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
