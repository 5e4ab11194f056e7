import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM


def make_tiny_llama(hidden: int = 32, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=128, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, eos_token_id=2, pad_token_id=0, bos_token_id=1,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_llama():
    """Factory of a 2-layer random Llama (vocab 128): `tiny_llama(hidden=32, seed=0)`."""
    return make_tiny_llama
