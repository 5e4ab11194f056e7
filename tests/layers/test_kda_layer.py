"""The KDA layer: chunked prefill + recurrent steps equal one full pass, GVA, padding, constant state size."""

import pytest
import torch

from frontier.errors import ConfigError
from frontier.layers import KDAState, KimiDeltaAttention
from frontier.testing import assert_close


def _layer(**kwargs) -> KimiDeltaAttention:
    torch.manual_seed(0)
    return KimiDeltaAttention(**{"hidden_size": 32, "num_heads": 2, "head_dim": 8, **kwargs}).eval()


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"num_v_heads": 4}, {"gate_lower_bound": -5.0}, {"chunk_size": 16}, {"decay_per_channel": False}],
    ids=["default", "gva", "lower-bound-gate", "chunk16", "gdn"],
)
def test_prefill_then_steps_equals_full_pass(kwargs):
    layer = _layer(**kwargs)
    x = torch.randn(2, 50, 32)
    with torch.no_grad():
        full = layer(x)
        state = KDAState()
        parts = [layer(x[:, :2], state=state), layer(x[:, 2:37], state=state)]  # prefill shorter than the conv
        parts += [layer(x[:, t : t + 1], state=state) for t in range(37, 50)]
    assert_close("output", full, torch.cat(parts, 1), atol=1e-5)


def test_state_size_does_not_grow_with_context():
    layer, state = _layer(num_v_heads=4), KDAState()
    sizes = []
    with torch.no_grad():
        for _ in range(3):
            layer(torch.randn(1, 40, 32), state=state)
            sizes.append(state.nbytes())
    # conv window: (2·2·8 + 4·8) channels × 3 steps; state: 4 heads × 8 × 8, all fp32
    assert sizes == [(64 * 3 + 4 * 8 * 8) * 4] * 3


def test_left_padding_leaves_the_real_tokens_unchanged():
    layer = _layer()
    x = torch.randn(1, 10, 32)
    padded = torch.cat([torch.randn(1, 4, 32), x], 1)
    mask = torch.tensor([[0] * 4 + [1] * 10])
    with torch.no_grad():
        assert_close("real tokens", layer(x), layer(padded, padding_mask=mask)[:, 4:], atol=1e-5)


def test_gradients_reach_every_parameter():
    layer = _layer(num_v_heads=4)
    layer.train()
    layer(torch.randn(2, 20, 32)).pow(2).mean().backward()
    assert [n for n, p in layer.named_parameters() if p.grad is None or p.grad.abs().sum() == 0] == []


def test_bad_head_counts_are_refused():
    with pytest.raises(ConfigError, match="num_v_heads=3 must be a multiple of num_heads=2"):
        _layer(num_v_heads=3)


def test_gdn_variant_shares_one_decay_per_head():
    layer = _layer(decay_per_channel=False)
    assert layer.f_b_proj.out_features == 2 and layer.dt_bias.shape == (2,)


def test_compiled_chunk_setting_reaches_the_op_while_training(monkeypatch):
    """`linear_compiled_chunk` routes KDA layers through `compiled_chunk_kda` when gradients are on, and leaves
    inference eager (replaced here by a spy, so no compile runs; the compiled op itself is tested against the
    reference in tests/kda/test_compiled.py)."""
    from frontier.kda import dispatch
    from frontier.models.kimi_linear import KimiLinearConfig, KimiLinearForCausalLM

    calls = []

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return dispatch.torch_chunk.chunk_kda(*args, **kwargs)

    monkeypatch.setattr(dispatch, "compiled_chunk_kda", spy)
    config = KimiLinearConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
        linear_num_heads=2, linear_head_dim=8, mlp_layer_types=["dense"] * 2, pad_token_id=0, bos_token_id=None,
        eos_token_id=None, layer_types=["linear_attention", "full_attention"], linear_compiled_chunk=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = KimiLinearForCausalLM(config).eval()
    ids = torch.randint(0, 64, (1, 12))
    training_logits = model(ids, use_cache=False).logits
    assert len(calls) == 1
    with torch.no_grad():  # the eager op's inference path: the same logits up to rounding
        assert_close("logits", model(ids, use_cache=False).logits, training_logits.detach(), atol=1e-5)
    assert len(calls) == 1  # inference ran the eager op


@pytest.mark.parametrize("width", [1, 2, 4])
def test_depthwise_causal_conv_matches_conv1d_with_gradients(width):
    from frontier.layers.kda import depthwise_causal_conv

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 9 + width - 1, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, width, generator=gen, dtype=torch.float64, requires_grad=True)
    reference = torch.nn.functional.conv1d(x, weight[:, None], groups=6)
    out = depthwise_causal_conv(x, weight)
    assert_close("conv", reference, out, atol=1e-12)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    expected = torch.autograd.grad(reference, (x, weight), grad)
    got = torch.autograd.grad(out, (x, weight), grad)
    for name, a, b in zip(("dx", "dweight"), expected, got, strict=True):
        assert_close(name, a, b, atol=1e-12)
