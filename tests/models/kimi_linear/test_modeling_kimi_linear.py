"""KimiLinearForCausalLM: parity with transformers' implementation, caching, generation, save/load."""

from __future__ import annotations

import pytest
import torch
import transformers

from frontier.errors import ConfigError, ShapeError
from frontier.models.kimi_linear import KimiLinearCache, KimiLinearConfig, KimiLinearForCausalLM
from frontier.testing import assert_close


@pytest.fixture
def transformers_checkpoint(tmp_path, tiny_config_kwargs):
    """A tiny random model saved by transformers' own KimiLinearForCausalLM, and that model."""
    torch.manual_seed(0)
    config = transformers.KimiLinearConfig(
        **tiny_config_kwargs, layer_types=["linear_attention"] * 3 + ["full_attention"]
    )
    reference = transformers.KimiLinearForCausalLM(config).eval()
    with torch.no_grad():  # random (not identity) norms and gates so every parameter matters
        for name, p in reference.named_parameters():
            if "norm" in name or "bias" in name:
                p.add_(torch.randn_like(p) * 0.1)
    reference.save_pretrained(tmp_path / "hf")
    return tmp_path / "hf", reference


def test_loads_transformers_checkpoint_and_matches_its_logits(transformers_checkpoint):
    path, reference = transformers_checkpoint
    model = KimiLinearForCausalLM.from_pretrained(path).eval()
    ids = torch.randint(3, 128, (2, 70), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close("logits", reference(ids).logits, model(ids).logits, atol=1e-4)


def test_loads_the_released_key_layout_with_dense_ffns_named_mlp(transformers_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    path, reference = transformers_checkpoint
    weights = load_file(path / "model.safetensors")
    dense = [k for k in weights if k.startswith("model.layers.0.block_sparse_moe.")]
    assert dense and all(k.split(".")[4] in ("gate_proj", "up_proj", "down_proj") for k in dense)
    released = {k.replace("layers.0.block_sparse_moe.", "layers.0.mlp."): v for k, v in weights.items()}
    (tmp_path / "released").mkdir()
    (tmp_path / "released" / "config.json").write_text((path / "config.json").read_text())
    save_file(released, tmp_path / "released" / "model.safetensors", metadata={"format": "pt"})
    model, info = KimiLinearForCausalLM.from_pretrained(tmp_path / "released", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.randint(3, 128, (1, 40), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert_close("logits", reference(ids).logits, model.eval()(ids).logits, atol=1e-4)


def test_transformers_loads_our_checkpoint(transformers_checkpoint, tmp_path):
    path, reference = transformers_checkpoint
    KimiLinearForCausalLM.from_pretrained(path).save_pretrained(tmp_path / "ours")
    reloaded = transformers.KimiLinearForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids = torch.randint(3, 128, (1, 33), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert_close("logits", reference(ids).logits, reloaded(ids).logits, atol=1e-6)


def test_greedy_generation_matches_transformers(transformers_checkpoint):
    path, reference = transformers_checkpoint
    model = KimiLinearForCausalLM.from_pretrained(path).eval()
    prompt = torch.randint(3, 128, (2, 9), generator=torch.Generator().manual_seed(3))
    ours = model.generate(prompt, max_new_tokens=15, do_sample=False, min_new_tokens=15)
    theirs = reference.generate(prompt, max_new_tokens=15, do_sample=False, min_new_tokens=15)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    "layer_types", [None, ["full_attention", "linear_attention", "linear_attention", "linear_attention"]]
)
def test_cached_decode_equals_full_forward(tiny_config_kwargs, layer_types):
    torch.manual_seed(0)
    model = KimiLinearForCausalLM(KimiLinearConfig(**tiny_config_kwargs, layer_types=layer_types)).eval()
    ids = torch.randint(3, 128, (2, 40), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        cache = KimiLinearCache(model.config)
        steps = [model(ids[:, :25], cache=cache).logits]  # chunked prefill, then one token at a time
        steps += [model(ids[:, t : t + 1], cache=cache).logits for t in range(25, 40)]
    assert_close("logits", full, torch.cat(steps, dim=1), atol=1e-4)
    assert cache.get_seq_length() == 40


def test_left_padded_batch_generates_like_single_rows(tiny_config_kwargs):
    torch.manual_seed(0)
    model = KimiLinearForCausalLM(KimiLinearConfig(**tiny_config_kwargs)).eval()
    short = torch.randint(3, 128, (1, 5), generator=torch.Generator().manual_seed(5))
    long = torch.randint(3, 128, (1, 12), generator=torch.Generator().manual_seed(6))
    batch = torch.cat([torch.cat([torch.zeros(1, 7, dtype=torch.long), short], 1), long])
    mask = (torch.arange(12)[None] >= torch.tensor([[7], [0]])).long()
    kwargs = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
    batched = model.generate(batch, attention_mask=mask, **kwargs)[:, 12:]
    assert torch.equal(batched[0], model.generate(short, **kwargs)[0, 5:])
    assert torch.equal(batched[1], model.generate(long, **kwargs)[0, 12:])


def test_runs_under_frontier_sampling_autodeco_and_the_server_engine(tiny_config_kwargs, char_tokenizer):
    """The shared sampling loop (serve, generate, evaluations) and AutoDeco's heads work on Kimi Linear's own cache:
    shared prefills repeated for n samples, rows leaving the batch at EOS, the final-norm hidden state for the heads."""
    from frontier.autodeco.modeling import AutoDecoForCausalLM
    from frontier.models.sampling import prefill, sample, static_params
    from frontier.serving.engine import Engine, Job

    torch.manual_seed(0)
    model = KimiLinearForCausalLM(KimiLinearConfig(**tiny_config_kwargs)).eval()
    ids = torch.randint(3, 128, (2, 7), generator=torch.Generator().manual_seed(1))
    expected = model.generate(ids, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)[:, 7:]
    greedy = dict(greedy=True, eos_token_id=[])
    assert torch.equal(sample(model, prefill(model, ids), static_params(0, 1), 6, **greedy).tokens, expected)
    repeated = sample(model, prefill(model, ids).repeat(2), static_params(0, 1), 6, **greedy).tokens
    assert torch.equal(repeated, expected.repeat_interleave(2, 0))
    stop = int(expected[0, 1])  # row 0 stops at its second token and leaves the batch; row 1 runs on unchanged
    stopped = sample(model, prefill(model, ids), static_params(0, 1), 6, greedy=True, eos_token_id=stop).tokens
    first_stop = int((expected[1] == stop).nonzero()[0]) + 1 if (expected[1] == stop).any() else 6
    assert torch.equal(stopped[1, :first_stop], expected[1, :first_stop])

    out = model(ids, output_hidden_states=True)
    assert len(out.hidden_states) == tiny_config_kwargs["num_hidden_layers"] + 1
    assert torch.equal(out.hidden_states[-1], model.model(ids).last_hidden_state)
    decoded = AutoDecoForCausalLM(model).generate(ids, max_new_tokens=4, seed=0, return_decoding_params=True)
    assert decoded.temperatures.shape == (2, 4) and not decoded.temperatures.isnan().any()

    engine = Engine(model, char_tokenizer)  # a recurrent state cannot be rewound: nothing is kept for later prompts
    (choice,) = engine.run(Job([ids[0].tolist()], max_tokens=6, temperature=0))
    assert choice.tokens == expected[0].tolist() and engine.prompt_cache.take([*ids[0].tolist(), 5]) is None


def test_save_load_round_trip(tmp_path, tiny_config_kwargs):
    torch.manual_seed(0)
    config = KimiLinearConfig(
        **tiny_config_kwargs, linear_num_v_heads=8, linear_gate_lower_bound=-5.0, linear_compiled_chunk=True
    )
    model = KimiLinearForCausalLM(config).eval()
    model.save_pretrained(tmp_path)
    loaded = KimiLinearForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.linear_num_v_heads == 8 and loaded.config.linear_gate_lower_bound == -5.0
    assert loaded.model.layers[0].self_attn.compiled_chunk  # inference below stays eager: no compile
    ids = torch.randint(3, 128, (1, 20))
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    with torch.no_grad():
        assert_close("logits", model(ids).logits, loaded(ids).logits, atol=1e-6)


def test_loss_and_gradients_reach_every_parameter(tiny_config_kwargs):
    torch.manual_seed(0)
    config = KimiLinearConfig(**{**tiny_config_kwargs, "num_experts_per_tok": 8})  # all experts active: all get grads
    model = KimiLinearForCausalLM(config)
    ids = torch.randint(3, 128, (2, 30))
    loss = model(ids, labels=ids, use_cache=False).loss
    loss.backward()
    assert 4.0 < loss.item() < 6.0  # ≈ ln(128) at init
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_cache_size_is_constant_for_kda_and_linear_for_mla(tiny_config_kwargs):
    torch.manual_seed(0)
    model = KimiLinearForCausalLM(KimiLinearConfig(**tiny_config_kwargs)).eval()
    sizes = []
    with torch.no_grad():
        cache = KimiLinearCache(model.config)
        for _ in range(3):
            model(torch.randint(3, 128, (1, 16)), cache=cache)
            sizes.append([state.nbytes() for state in cache.layers])
    kda = [row[0] for row in sizes]
    mla = [row[3] for row in sizes]
    assert kda[0] == kda[1] == kda[2]
    # Only the latent (32) and the shared key slice (8) are cached per token: 40 fp32 values.
    assert mla == [16 * 40 * 4, 32 * 40 * 4, 48 * 40 * 4]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layer_types": ["linear_attention"] * 3}, "layer_types has 3 entries"),
        ({"layer_types": ["kda"] * 4}, r"contains \['kda'\]"),
        ({"linear_num_v_heads": 6}, "must be a multiple of linear_num_heads"),
        ({"q_lora_rank": 16}, "q_lora_rank is not supported"),
        ({"mla_use_nope": False}, "mla_use_nope=False is not supported"),
        ({"moe_router_activation_func": "softmax"}, "moe_router_activation_func='softmax' is not supported"),
        ({"moe_layer_freq": 2}, "moe_layer_freq=2 is not supported"),
        ({"linear_gate_lower_bound": 3.0}, "must be negative"),
        ({"linear_chunk_size": 0}, "linear_chunk_size must be a positive integer"),
        ({"num_experts_per_tok": 300}, "num_experts_per_tok=300 must be from 1 to num_local_experts"),
        ({"topk_group": 2}, "topk_group=2 must be from 1 to n_group=1"),
        ({"topk_group": None}, "topk_group=None must be from 1 to n_group=1"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu' is not supported"),
    ],
)
def test_bad_config_is_refused(tiny_config_kwargs, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        KimiLinearConfig(**{**tiny_config_kwargs, **kwargs})


def test_reads_the_released_checkpoint_config_layout():
    config = KimiLinearConfig(
        num_hidden_layers=5,
        linear_attn_config={"head_dim": 16, "num_heads": 2, "short_conv_kernel_size": 3,
                            "full_attn_layers": [4, 5], "kda_layers": [1, 2, 3]},
        first_k_dense_replace=2,
    )  # fmt: skip
    assert config.layer_types == ["linear_attention"] * 3 + ["full_attention"] * 2
    assert config.mlp_layer_types == ["dense", "dense", "sparse", "sparse", "sparse"]
    assert (config.linear_head_dim, config.linear_num_heads, config.linear_conv_kernel_dim) == (16, 2, 3)


def test_explicit_head_fields_win_over_the_nested_released_ones_and_survive_a_save(tmp_path):
    nested = {"head_dim": 128, "num_heads": 32, "full_attn_layers": [4]}
    config = KimiLinearConfig(num_hidden_layers=4, linear_attn_config=nested, linear_head_dim=16, linear_num_heads=2)
    assert (config.linear_head_dim, config.linear_num_heads) == (16, 2)
    config.save_pretrained(tmp_path)
    reloaded = KimiLinearConfig.from_pretrained(tmp_path)
    assert (reloaded.linear_head_dim, reloaded.linear_num_heads, reloaded.layer_types) == (16, 2, config.layer_types)


def _tiny_model(tiny_config_kwargs):
    torch.manual_seed(0)
    return KimiLinearForCausalLM(KimiLinearConfig(**tiny_config_kwargs)).eval()


def test_past_key_values_is_the_cache_under_its_older_name(tiny_config_kwargs):
    model = _tiny_model(tiny_config_kwargs)
    ids = torch.randint(3, 128, (1, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = model(ids).logits[:, -1]
        cache = model(ids[:, :-1]).cache
        step = model(ids[:, -1:], past_key_values=cache).logits[:, -1]
        assert_close("logits", full, step, atol=1e-4)
        with pytest.raises(ConfigError, match="pass the cache once"):
            model(ids[:, -1:], cache=cache, past_key_values=KimiLinearCache(model.config))


def test_generate_continues_from_a_cache_it_is_handed(tiny_config_kwargs):
    model = _tiny_model(tiny_config_kwargs)
    prompt = torch.randint(3, 128, (1, 7), generator=torch.Generator().manual_seed(6))
    fresh = model.generate(prompt, max_new_tokens=6, do_sample=False, min_new_tokens=6)
    with torch.no_grad():
        cache = model(prompt[:, :-1]).cache
    continued = model.generate(prompt, cache=cache, max_new_tokens=6, do_sample=False, min_new_tokens=6)
    assert torch.equal(fresh, continued)


def test_padding_after_a_cached_context_and_labels_with_logits_to_keep_are_refused(tiny_config_kwargs):
    model = _tiny_model(tiny_config_kwargs)
    ids = torch.randint(3, 128, (1, 6), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        cache = model(ids).cache
        mask = torch.tensor([[1] * 6 + [0, 1]])
        with pytest.raises(ShapeError, match="padding after tokens of a sequence"):
            model(ids[:, :2], attention_mask=mask, cache=cache)
        right_padded = model(ids, attention_mask=torch.tensor([[1] * 4 + [0, 0]])).cache  # a prefill is accepted
        with pytest.raises(ShapeError, match="pad on the left"):  # decoding after it is not
            model(ids[:, :1], attention_mask=torch.tensor([[1] * 4 + [0, 0, 1]]), cache=right_padded)
        with pytest.raises(ShapeError, match="logits_to_keep=0 with labels"):
            model(ids, labels=ids, logits_to_keep=1)
    assert KimiLinearForCausalLM.accepts_loss_kwargs is False  # Trainer must average accumulated steps itself


def test_inputs_and_masks_of_the_wrong_shape_name_the_expected_one(tiny_config_kwargs):
    model = _tiny_model(tiny_config_kwargs)
    ids = torch.randint(3, 128, (2, 5), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        with pytest.raises(ShapeError, match=r"input_ids must be 2-D \[B, T\], got shape \[5\]"):
            model(ids[0])
        with pytest.raises(ShapeError, match=r"inputs_embeds must be \[B, T, "):
            model(inputs_embeds=torch.zeros(2, 5, 3))
        with pytest.raises(ShapeError, match=r"attention_mask has shape \[2, 6\], expected \[2, 5\]"):
            model(ids, attention_mask=torch.ones(2, 6, dtype=torch.long))
        cache = model(ids).cache
        with pytest.raises(ShapeError, match=r"expected \[2, 6\]"):  # cached + new tokens
            model(ids[:, :1], attention_mask=torch.ones(2, 1, dtype=torch.long), cache=cache)


def test_a_cache_filled_under_inference_mode_must_be_continued_under_it(tiny_config_kwargs):
    model = _tiny_model(tiny_config_kwargs)
    ids = torch.randint(3, 128, (1, 5), generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        cache = model(ids[:, :-1]).cache
    with torch.no_grad(), pytest.raises(ConfigError, match=r"continue decoding under torch\.inference_mode"):
        model(ids[:, -1:], cache=cache)
    with torch.inference_mode():
        assert model(ids[:, -1:], cache=cache).logits.shape == (1, 1, model.config.vocab_size)
