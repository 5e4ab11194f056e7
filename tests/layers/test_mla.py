"""NoPE MLA: the absorbed decode path equals the expanded path, and the cache holds only latents."""

import torch

from frontier.layers import MLAState, MultiHeadLatentAttention
from frontier.testing import assert_close


def _mla(**kwargs) -> MultiHeadLatentAttention:
    torch.manual_seed(0)
    args = dict(hidden_size=48, num_heads=4, kv_lora_rank=24, qk_nope_head_dim=12, qk_rope_head_dim=6, v_head_dim=10)
    return MultiHeadLatentAttention(**{**args, **kwargs}).eval()


def test_absorbed_decoding_equals_expanded_attention():
    absorbed, expanded = _mla(), _mla(absorb_for_decoding=False)
    x = torch.randn(2, 30, 48)
    with torch.no_grad():
        states = MLAState(), MLAState()
        outs = {id(m): [m(x[:, :20], state=s)] for m, s in zip((absorbed, expanded), states, strict=True)}
        for t in range(20, 30):
            for m, s in zip((absorbed, expanded), states, strict=True):
                outs[id(m)].append(m(x[:, t : t + 1], state=s))
        full = expanded(x)
    assert_close("absorbed vs expanded", torch.cat(outs[id(expanded)], 1), torch.cat(outs[id(absorbed)], 1), 1e-5)
    assert_close("cached vs full", full, torch.cat(outs[id(absorbed)], 1), 1e-5)


def test_cache_holds_only_the_latent_and_shared_key_slice():
    mla, state = _mla(), MLAState()
    with torch.no_grad():
        mla(torch.randn(3, 7, 48), state=state)
    assert state.latent.shape == (3, 7, 24) and state.k_rope.shape == (3, 7, 6)
    assert state.nbytes() == 3 * 7 * (24 + 6) * 4


def test_no_positional_encoding_permuting_the_context_permutes_nothing_but_order():
    """NoPE: the last query's output depends on the set of earlier tokens, not on their order."""
    mla = _mla()
    x = torch.randn(1, 9, 48)
    perm = torch.cat([torch.randperm(8), torch.tensor([8])])
    with torch.no_grad():
        assert_close("last token", mla(x)[:, -1], mla(x[:, perm])[:, -1], 1e-5)


def test_padding_queries_do_not_produce_nan_and_real_tokens_ignore_padding():
    mla = _mla()
    x = torch.randn(1, 6, 48)
    padded = torch.cat([torch.randn(1, 3, 48), x], 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        out = mla(padded, padding_mask=mask)
        assert torch.isfinite(out).all()
        assert_close("real tokens", mla(x), out[:, 3:], 1e-5)
