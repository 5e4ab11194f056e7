"""Bad inputs to the KDA ops raise ValueError naming the tensor, its shape and the expected shape."""

import pytest
import torch

from frontier.kda import chunk_kda, fused_recurrent_kda, naive_recurrent_kda

OPS = [naive_recurrent_kda, chunk_kda, fused_recurrent_kda]


def _bad(kda_inputs, change):
    inputs = kda_inputs(2, 8, 2, 4, 16, 8, with_state=True)
    change(inputs)
    return inputs


CASES = {
    "q-rank": (lambda d: d.update(q=d["q"][0]), r"q must have 4 dims .* got shape \[8, 2, 16\]"),
    "k-shape": (lambda d: d.update(k=d["k"][..., :8]), r"k has shape \[2, 8, 2, 8\], expected \[2, 8, 2, 16\]"),
    "v-length": (lambda d: d.update(v=d["v"][:, :5]), r"v has shape \[2, 5, 4, 8\], expected \[2, 8, 4, 8\]"),
    "g-heads": (lambda d: d.update(g=d["g"][:, :, :2]), r"g has shape \[2, 8, 2, 16\], expected \[2, 8, 4, 16\]"),
    "beta-rank": (lambda d: d.update(beta=d["beta"][..., None]), r"beta must have 3 dims"),
    "heads-not-divisible": (
        lambda d: d.update(v=d["v"][:, :, :3], g=d["g"][:, :, :3], beta=d["beta"][:, :, :3],
                           initial_state=d["initial_state"][:, :3]),
        r"v has 3 heads, which is not a multiple of the 2 query/key heads \(q \[2, 8, 2, 16\], v \[2, 8, 3, 8\]\)",
    ),
    "state-shape": (
        lambda d: d.update(initial_state=d["initial_state"][..., :4]),
        r"initial_state has shape \[2, 4, 16, 4\], expected \[2, 4, 16, 8\]",
    ),
    "positive-g": (lambda d: d["g"].__setitem__((0, 3, 1, 2), 0.5), r"must be <= 0, but max\(g\) = 0.5"),
}  # fmt: skip


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.__name__)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_names_tensor_and_shapes(kda_inputs, op, case):
    change, match = CASES[case]
    with pytest.raises(ValueError, match=match):
        op(**_bad(kda_inputs, change))


def test_chunk_size_must_be_positive(kda_inputs):
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_kda(**kda_inputs(1, 4, 1, 1, 8, 8, with_state=False), chunk_size=0)


def test_not_a_tensor():
    with pytest.raises(ValueError, match=r"q must be a torch\.Tensor"):
        chunk_kda([1.0], torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1))
