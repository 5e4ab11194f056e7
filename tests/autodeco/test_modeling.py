"""AutoDecoForCausalLM: frozen base, heads-only checkpoints, and a decoding loop that uses the heads."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from frontier.autodeco import soft_top_p
from frontier.autodeco.modeling import CONFIG_NAME, HEADS_NAME, AutoDecoForCausalLM
from frontier.errors import ConfigError, ModelLoadError


@pytest.fixture
def model(tiny_llama) -> AutoDecoForCausalLM:
    torch.manual_seed(0)
    return AutoDecoForCausalLM(tiny_llama())


def test_base_is_frozen_and_only_heads_learn(model):
    assert not any(p.requires_grad for p in model.base_model.parameters())
    ids = torch.randint(3, 128, (2, 12))
    out = model(ids)
    assert out.temperature.shape == out.top_p.shape == (2, 12, 1)
    probs = torch.softmax(out.logits / out.temperature, -1)
    loss = -(soft_top_p(probs, out.top_p.squeeze(-1))[..., :-1, :].gather(-1, ids[:, 1:, None]) + 1e-9).log().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head_parameters())
    assert all(p.grad is None for p in model.base_model.parameters())


def test_heads_only_checkpoint_round_trip(model, tmp_path, tiny_llama):
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / HEADS_NAME, framework="pt") as handle:
        keys = set(handle.keys())
    assert keys == {f"{h}.mlp.{i}.{w}" for h in ("temp_head", "top_p_head") for i in (0, 2) for w in ("weight", "bias")}
    reloaded = AutoDecoForCausalLM.from_pretrained(tmp_path, base_model=tiny_llama())
    ids = torch.randint(3, 128, (1, 9))
    a, b = model(ids), reloaded(ids)
    assert torch.equal(a.temperature, b.temperature) and torch.equal(a.top_p, b.top_p)


@pytest.mark.parametrize("off", ["temperature", "top_p"])
def test_a_switched_off_head_predicts_one_and_stays_off_when_reloaded(tiny_llama, tmp_path, off):
    base = tiny_llama()
    torch.manual_seed(0)
    both = AutoDecoForCausalLM(base)
    torch.manual_seed(0)  # the same heads, one of them switched off
    model = AutoDecoForCausalLM(base, enable_temperature_head=off != "temperature", enable_top_p_head=off != "top_p")
    ids = torch.randint(3, 128, (2, 7))
    full, single = both(ids), model(ids)
    switched, kept = ("temperature", "top_p") if off == "temperature" else ("top_p", "temperature")
    assert torch.equal(getattr(single, switched), torch.ones(2, 7, 1))
    assert not torch.equal(getattr(full, switched), torch.ones(2, 7, 1))  # the untrained head would not be neutral
    if off == "top_p":  # the temperature head reads nothing from the top-p head
        assert torch.equal(single.temperature, full.temperature)
    model.save_pretrained(tmp_path)
    reloaded = AutoDecoForCausalLM.from_pretrained(tmp_path, base_model=base)
    assert torch.equal(getattr(reloaded(ids), kept), getattr(single, kept))
    assert torch.equal(getattr(reloaded(ids), switched), torch.ones(2, 7, 1))
    with pytest.raises(ConfigError, match="enable at least one head"):
        AutoDecoForCausalLM(base, enable_temperature_head=False, enable_top_p_head=False)


def test_heads_for_another_base_are_refused(model, tmp_path, tiny_llama):
    """Another width, architecture or vocabulary: heads that would run on it, silently wrong, are refused."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="hidden_size 32, but this base has 48"):
        AutoDecoForCausalLM.from_pretrained(tmp_path, base_model=tiny_llama(hidden=48))
    other_vocab = tiny_llama()
    other_vocab.config.vocab_size = 256
    with pytest.raises(ConfigError, match="base_vocab_size 128, but this base has 256"):
        AutoDecoForCausalLM.from_pretrained(tmp_path, base_model=other_vocab)
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2))  # fmt: skip
    with pytest.raises(ConfigError, match="base_model_type 'llama', but this base has 'qwen2'"):
        AutoDecoForCausalLM.from_pretrained(tmp_path, base_model=qwen)


def test_heads_record_where_their_base_was_loaded_from(model, tmp_path, tiny_llama, char_tokenizer):
    from frontier.models import load_causal_lm

    model.save_pretrained(tmp_path / "in-memory")  # a base built in memory has no name to record
    with pytest.raises(ModelLoadError, match="trained on a base model built in memory"):
        AutoDecoForCausalLM.from_pretrained(tmp_path / "in-memory")

    tiny_llama(seed=3).save_pretrained(tmp_path / "base")
    char_tokenizer.save_pretrained(tmp_path / "base")
    base, _ = load_causal_lm(tmp_path / "base", progress=False)
    AutoDecoForCausalLM(base).save_pretrained(tmp_path / "heads")
    reloaded = AutoDecoForCausalLM.from_pretrained(tmp_path / "heads")  # finds its base without being told
    assert reloaded.base_model_name_or_path == str((tmp_path / "base").resolve())
    for a, b in zip(reloaded.base_model.parameters(), base.parameters(), strict=True):
        assert torch.equal(a, b)


def test_heads_on_the_embedded_model_name_no_path(embedded_model, tmp_path):
    import json

    AutoDecoForCausalLM(embedded_model[0]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["base_model_name_or_path"] is None and config["base_model_known"] is True


def test_missing_or_corrupt_heads_folder(tmp_path, model, tiny_llama):
    with pytest.raises(ModelLoadError, match="not an AutoDeco heads folder"):
        AutoDecoForCausalLM.from_pretrained(tmp_path, base_model=tiny_llama())
    model.save_pretrained(tmp_path)
    data = (tmp_path / HEADS_NAME).read_bytes()
    (tmp_path / HEADS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        AutoDecoForCausalLM.from_pretrained(tmp_path, base_model=tiny_llama())


def test_user_temperature_zero_is_greedy_like_the_base(model):
    ids = torch.randint(3, 128, (2, 7), generator=torch.Generator().manual_seed(1))
    ours = model.generate(ids, max_new_tokens=10, temperature=0, eos_token_id=[]).sequences
    base = model.base_model.generate(ids, max_new_tokens=10, min_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, base[:, 7:])


def test_left_padded_batch_decodes_like_single_rows(model):
    short = torch.randint(3, 128, (1, 4), generator=torch.Generator().manual_seed(2))
    long = torch.randint(3, 128, (1, 9), generator=torch.Generator().manual_seed(3))
    batch = torch.cat([torch.cat([torch.zeros(1, 5, dtype=torch.long), short], 1), long])
    mask = (torch.arange(9)[None] >= torch.tensor([[5], [0]])).long()
    kwargs = dict(max_new_tokens=8, temperature=0, eos_token_id=[])
    batched = model.generate(batch, attention_mask=mask, **kwargs).sequences
    assert torch.equal(batched[0], model.generate(short, **kwargs).sequences[0])
    assert torch.equal(batched[1], model.generate(long, **kwargs).sequences[0])


def test_sampling_returns_per_token_parameters_and_is_seeded(model):
    ids = torch.randint(3, 128, (3, 5))
    seen = []
    out = model.generate(ids, max_new_tokens=6, temperature=0.7, top_p=0.9, seed=5, eos_token_id=[],
                         return_decoding_params=True, on_token=lambda t, T, p: seen.append((t, T, p)))  # fmt: skip
    assert out.sequences.shape == out.temperatures.shape == out.top_ps.shape == (3, 6) and len(seen) == 6
    assert ((out.temperatures > 0) & (out.temperatures < 1.4)).all()  # (0, 2) × 0.7
    assert ((out.top_ps > 0) & (out.top_ps <= 0.9)).all()
    again = model.generate(ids, max_new_tokens=6, temperature=0.7, top_p=0.9, seed=5, eos_token_id=[])
    assert torch.equal(out.sequences, again.sequences)


def test_rows_stop_at_eos_and_pad_afterwards(model):
    ids = torch.randint(3, 128, (2, 5))
    first = model.generate(ids, max_new_tokens=1, temperature=0).sequences[:, 0]
    out = model.generate(ids, max_new_tokens=5, temperature=0, eos_token_id=int(first[0]), pad_token_id=0)
    assert out.sequences[0, 0] == first[0] and (out.sequences[0, 1:] == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_new_tokens": 0}, "max_new_tokens"), ({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p")],
)
def test_bad_decoding_arguments(model, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        model.generate(torch.ones(1, 3, dtype=torch.long), **kwargs)


def test_embedded_model_with_heads_answers_greedily(embedded_model):
    from frontier.models import chat_inputs

    base, tokenizer = embedded_model
    model = AutoDecoForCausalLM(base)
    inputs = chat_inputs(tokenizer, ["What is the capital of France?"])
    out = model.generate(inputs["input_ids"], inputs["attention_mask"], max_new_tokens=12, temperature=0)
    assert "Paris" in tokenizer.decode(out.sequences[0], skip_special_tokens=True)


def test_heads_are_created_on_the_base_models_device(tiny_llama):
    base = tiny_llama(hidden=32).to("meta")  # any device but the CPU default, without a GPU
    wrapped = AutoDecoForCausalLM(base)
    assert {p.device.type for p in wrapped.head_parameters()} == {"meta"}
    assert {p.dtype for p in wrapped.head_parameters()} == {torch.float32}
