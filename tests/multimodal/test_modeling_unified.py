"""The unified model: hierarchical masks, no leakage from the target text, fusion depth, packed texts, save/load,
generation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from frontier.errors import ConfigError, ShapeError
from frontier.multimodal.configuration_unified import UnifiedMultimodalConfig
from frontier.multimodal.modeling_unified import UnifiedMultimodalForConditionalGeneration, hierarchical_masks
from frontier.testing import assert_close

TINY = dict(vocab_size=40, image_size=16, patch_size=4, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
            num_attention_heads=2, fusion_layer=2, max_text_positions=16, projection_dim=8)  # fmt: skip
BACKENDS = ["softmax", "kimi_linear"]


def tiny_model(**overrides) -> UnifiedMultimodalForConditionalGeneration:
    torch.manual_seed(0)
    return UnifiedMultimodalForConditionalGeneration(UnifiedMultimodalConfig(**{**TINY, **overrides})).eval()


def inputs(batch: int = 2, length: int = 7, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 16, 16, generator=gen), torch.randint(4, 40, (batch, length), generator=gen)


def test_masks_open_cross_modal_entries_only_in_fused_layers():
    text_mask = torch.tensor([[1, 1, 1, 0]])
    within, fused = hierarchical_masks(2, text_mask)
    within, fused = within[0, 0].int().tolist(), fused[0, 0].int().tolist()
    #                  img img  t0 t1 t2 pad
    assert within == [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 1],
    ]  # fmt: skip  (a padded query keeps itself)
    assert fused == [[1, 1, 0, 0, 0, 0],   # patches never read text
                     [1, 1, 0, 0, 0, 0],
                     [1, 1, 1, 0, 0, 0],
                     [1, 1, 1, 1, 0, 0],
                     [1, 1, 1, 1, 1, 0],
                     [1, 1, 1, 1, 1, 1]]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_changing_a_target_token_changes_nothing_before_it(backend):
    """Future-token perturbation: editing token 5 may change logits at positions ≥ 5 only; the patches never see
    it, so no earlier prediction learns from the answer."""
    model = tiny_model(attention_backend=backend)
    image, ids = inputs()
    edited = ids.clone()
    edited[:, 5] = (ids[:, 5] + 1 - 4) % 36 + 4
    with torch.no_grad():
        before = model(image, ids).logits
        after = model(image, edited).logits
    assert_close("logits before the edit", before[:, :5], after[:, :5], atol=1e-6)
    assert (before[:, 5:] - after[:, 5:]).abs().max() > 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_reads_the_image_only_from_the_fusion_layer_on(backend):
    captured = {}
    model = tiny_model(attention_backend=backend)
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_hook(lambda mod, args, out, i=i: captured.__setitem__(i, out[:, 16:].clone()))
    image, ids = inputs()
    with torch.no_grad():
        model(image, ids)
        first = dict(captured)
        model(image + 1.0, ids)
    for i in range(4):
        changed = (first[i] - captured[i]).abs().max().item() > 1e-5
        assert changed == (i >= 2), f"layer {i}: text states {'changed' if changed else 'unchanged'}"


@pytest.mark.parametrize("towers", [False, True])
def test_packed_texts_get_the_logits_they_get_alone(towers):
    """Two texts about one image in one row (segments) = each in its own row: same logits, same loss, and the
    retrieval embedding pooled from that pass = `encode_image`."""
    shape = dict(num_hidden_layers=2, fusion_layer=1, modality_specific_layers=2) if towers else {}
    model = tiny_model(**shape)
    image, ids = inputs(batch=1, length=9)
    first, second = ids[:, :4], ids[:, 4:]
    segments = torch.tensor([[0] * 4 + [1] * 5])
    labels = ids.clone()
    labels[:, [0, 4]] = -100  # each segment's first token is not predicted (as [BOS])
    with torch.no_grad():
        packed = model(image, ids, segment_ids=segments, labels=labels, retrieval_input_ids=first)
        alone = [model(image, part).logits for part in (first, second)]
        rows = model(image.expand(2, -1, -1, -1), torch.stack([first[0], second[0, :4]]))  # second cut to 4
        assert_close("first text", packed.logits[:, :4], alone[0], atol=1e-5)
        assert_close("second text", packed.logits[:, 4:], alone[1], atol=1e-5)
        assert_close("second text, cut", rows.logits[1:], alone[1][:, :4], atol=1e-5)
        reference = torch.cat([alone[0][0, :-1], alone[1][0, :-1]])
        targets = torch.cat([labels[0, 1:4], labels[0, 5:]])
        assert_close("packed loss", packed.lm_loss, F.cross_entropy(reference, targets), atol=1e-5)
        separate = model(image, first, retrieval_pixel_values=image, retrieval_input_ids=first)
        assert_close("retrieval loss", packed.retrieval_loss, separate.retrieval_loss, atol=1e-6)


def test_kda_layers_take_one_text_per_row():
    model = tiny_model(attention_backend="kimi_linear")
    image, ids = inputs(batch=1)
    with pytest.raises(ConfigError, match="need softmax attention in every layer"):
        model(image, ids, segment_ids=torch.tensor([[0, 0, 0, 1, 1, 1, 1]]))
    model(image, ids, segment_ids=torch.zeros_like(ids))  # one segment is fine


def test_without_fusion_the_caption_ignores_the_image():
    model = tiny_model(fusion_layer=4)
    image, ids = inputs()
    with torch.no_grad():
        assert_close("logits", model(image, ids).logits, model(-image, ids).logits, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_and_load_round_trip(tmp_path, backend):
    model = tiny_model(attention_backend=backend)
    model.save_pretrained(tmp_path)
    loaded = UnifiedMultimodalForConditionalGeneration.from_pretrained(tmp_path).eval()
    image, ids = inputs()
    with torch.no_grad():
        assert_close("logits", model(image, ids).logits, loaded(image, ids).logits, atol=0)
        assert_close("image embedding", model.encode_image(image), loaded.encode_image(image), atol=0)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.token_embed.weight.data_ptr()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_parameter_learns_from_the_joint_loss(backend):
    model = tiny_model(attention_backend=backend).train()
    image, ids = inputs()
    labels = ids.clone()
    labels[:, :3] = -100
    out = model(image, ids, labels=labels, retrieval_pixel_values=image, retrieval_input_ids=ids)
    assert_close("loss", out.lm_loss + out.retrieval_loss, out.loss, atol=0)
    out.loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent


@pytest.mark.parametrize("layout", ["shared", "towers"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cached_generation_gives_the_logits_of_the_full_forward(backend, layout):
    """Prompts of different lengths (read in groups, then one token per step over the cache): every step's logits
    equal those of `forward` on the row alone with all its tokens so far."""
    towers = dict(modality_specific_layers=2) if layout == "towers" else {}
    model = tiny_model(attention_backend=backend, **towers)
    image, ids = inputs(batch=3, length=6)
    prompts = [ids[0, :2].tolist(), ids[1, :5].tolist(), ids[2, :2].tolist()]
    no_eos = F.one_hot(torch.tensor(model.config.eos_token_id), 40) * -1e4  # every row generates 5 tokens
    model.lm_head.register_forward_hook(lambda module, args, out: out + no_eos)
    seen = []
    hook = model.lm_head.register_forward_hook(lambda module, args, out: seen.append(out.clone()))
    new = model.generate(image, prompts, max_new_tokens=5)
    hook.remove()
    assert all(len(row) == 5 for row in new)
    for b, prompt in enumerate(prompts):
        with torch.no_grad():
            reference = model(image[b : b + 1], torch.tensor([prompt + new[b]])).logits[0]
        cached = torch.stack([step[b] for step in seen])
        assert_close(f"row {b} step logits", cached, reference[len(prompt) - 1 : -1], atol=1e-4)


def test_generation_stops_at_the_longest_text():
    model = tiny_model()  # max_text_positions=16: a 14-token prompt gets 2 new tokens, a 3-token one all 5
    image, ids = inputs(batch=2, length=14)
    new = model.generate(image, [ids[0].tolist(), ids[1, :3].tolist()], max_new_tokens=5)
    assert [len(row) for row in new] == [2, 5]
    with pytest.raises(ShapeError, match="at least one token"):
        model.generate(image, [[], [5]])


def test_generation_without_a_limit_runs_to_the_text_window():
    """The default has no token limit of its own: captions longer than any fixed cap are not cut."""
    model = tiny_model()  # max_text_positions=16
    no_eos = F.one_hot(torch.tensor(model.config.eos_token_id), 40) * -1e4
    model.lm_head.register_forward_hook(lambda module, args, out: out + no_eos)
    image, ids = inputs(batch=2, length=3)
    assert [len(row) for row in model.generate(image, ids.tolist())] == [13, 13]


def test_generation_stops_at_eos():
    model = tiny_model()
    eos_wins = torch.nn.functional.one_hot(torch.tensor(2), 40) * 1e4
    model.lm_head.register_forward_hook(lambda module, args, out: out + eos_wins)
    image, ids = inputs(length=3)
    assert model.generate(image, ids.tolist(), max_new_tokens=5) == [[], []]


def test_contrastive_loss_prefers_matching_pairs():
    model = tiny_model()
    emb = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    assert model.contrastive_loss(emb, emb) < model.contrastive_loss(emb, emb.roll(1, 0))


def test_bad_inputs_are_refused_with_the_shape():
    model = tiny_model()
    with pytest.raises(ShapeError, match=r"pixel_values has shape \(2, 3, 32, 32\); expected \[B, 3, 16, 16\]"):
        model(torch.zeros(2, 3, 32, 32), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ShapeError, match="max_text_positions=16"):
        model(input_ids=torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        UnifiedMultimodalConfig(image_size=30, patch_size=4)
    with pytest.raises(ConfigError, match="fusion_layer"):
        UnifiedMultimodalConfig(num_hidden_layers=2, fusion_layer=3)
    with pytest.raises(ConfigError, match="attention_backend"):
        UnifiedMultimodalConfig(attention_backend="mamba")


def test_two_towers_fused_at_the_end_have_the_parameters_of_the_shared_model():
    shared = tiny_model(num_hidden_layers=4, fusion_layer=2)
    towers = tiny_model(num_hidden_layers=2, fusion_layer=1, modality_specific_layers=2)
    assert towers.num_parameters() == shared.num_parameters()
    image, _ = inputs()
    with torch.no_grad():  # the text tower's weights never touch the patches
        before = towers.encode_image(image)
        for layer in towers.model.layers:
            for p in layer.branches[1].parameters():
                p.add_(1.0)
        assert_close("image embedding", before, towers.encode_image(image), atol=0)


def test_two_towers_leak_no_target_either():
    model = tiny_model(num_hidden_layers=2, fusion_layer=1, modality_specific_layers=2)
    image, ids = inputs()
    edited = ids.clone()
    edited[:, 5] = (ids[:, 5] + 1 - 4) % 36 + 4
    with torch.no_grad():
        before = model(image, ids).logits
        after = model(image, edited).logits
    assert_close("logits before the edit", before[:, :5], after[:, :5], atol=1e-6)


def test_fused_kda_layers_cannot_be_modality_specific():
    with pytest.raises(ConfigError, match=r"layers \[2\] would be fused KDA layers"):
        UnifiedMultimodalConfig(attention_backend="kimi_linear", num_hidden_layers=4, fusion_layer=2,
                                modality_specific_layers=3)  # fmt: skip
    UnifiedMultimodalConfig(attention_backend="kimi_linear", num_hidden_layers=4, fusion_layer=2,
                            modality_specific_layers=2)  # fmt: skip
