"""MoE routing and expert mixing against a direct per-token computation."""

import torch

from frontier.layers import MoE, TopKRouter


def test_moe_equals_per_token_weighted_sum_of_chosen_experts():
    torch.manual_seed(0)
    moe = MoE(16, 8, num_experts=6, top_k=2, scaling_factor=2.0)
    torch.nn.init.normal_(moe.gate.weight)
    x = torch.randn(3, 5, 16)
    weights, indices = moe.gate(x.reshape(-1, 16))
    expected = torch.stack([
        sum(w * moe.experts[e](token) for w, e in zip(weights[i], indices[i].tolist(), strict=True))
        for i, token in enumerate(x.reshape(-1, 16))
    ]).view_as(x) + moe.shared_experts(x)  # fmt: skip
    torch.testing.assert_close(moe(x), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.full((15,), 2.0))  # renormalised, then scaled


def test_router_bias_changes_the_choice_but_not_the_weights():
    torch.manual_seed(0)
    router = TopKRouter(8, num_experts=4, top_k=1, renormalize=False)
    torch.nn.init.normal_(router.weight)
    x = torch.randn(10, 8)
    router.e_score_correction_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 10.0]))
    weights, indices = router(x)
    assert (indices == 3).all()
    torch.testing.assert_close(weights[:, 0], torch.sigmoid(x @ router.weight[3]))


def test_group_limited_routing_stays_inside_the_best_groups():
    torch.manual_seed(0)
    router = TopKRouter(8, num_experts=8, top_k=2, num_groups=4, top_k_groups=1)
    torch.nn.init.normal_(router.weight)
    _, indices = router(torch.randn(50, 8))
    assert (indices[:, 0] // 2 == indices[:, 1] // 2).all()  # both experts from the same group of two
