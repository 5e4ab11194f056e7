import pytest

TINY = dict(
    vocab_size=128, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16,
    v_head_dim=16, num_local_experts=8, num_experts_per_tok=2, linear_head_dim=16, linear_num_heads=4,
    pad_token_id=0, bos_token_id=1, eos_token_id=2,
)  # fmt: skip


@pytest.fixture
def tiny_config_kwargs() -> dict:
    """A 4-layer Kimi Linear (3 KDA + 1 MLA, dense first FFN then MoE with 8 experts top-2), about 0.3M parameters."""
    return dict(TINY)
