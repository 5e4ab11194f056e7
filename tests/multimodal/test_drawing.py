"""Drawing: the code sequence reads its description only, the judge scores real scenes, Fréchet distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frontier.errors import ConfigError, ShapeError
from frontier.multimodal.configuration_unified import UnifiedMultimodalConfig
from frontier.multimodal.drawing import frechet_distance, judge_images, scene_cells, train_judge
from frontier.multimodal.modeling_unified import UnifiedMultimodalForConditionalGeneration, drawing_masks
from frontier.multimodal.scenes import SceneConfig, SceneGenerator
from frontier.testing import assert_close

TINY = dict(vocab_size=40, image_size=16, patch_size=4, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
            num_attention_heads=2, fusion_layer=2, max_text_positions=16, projection_dim=8,
            image_codebook_size=12)  # fmt: skip


def drawing_model(**overrides) -> UnifiedMultimodalForConditionalGeneration:
    torch.manual_seed(0)
    return UnifiedMultimodalForConditionalGeneration(UnifiedMultimodalConfig(**{**TINY, **overrides})).eval()


def test_drawing_masks():
    within, fused = drawing_masks(torch.tensor([[1, 1, 0]]), 2)
    #                       t0 t1 pad c0 c1
    assert within[0, 0].int().tolist() == [[1, 0, 0, 0, 0],
                                           [1, 1, 0, 0, 0],
                                           [1, 1, 1, 0, 0],
                                           [0, 0, 0, 1, 0],
                                           [0, 0, 0, 1, 1]]  # fmt: skip
    assert fused[0, 0].int().tolist() == [[1, 0, 0, 0, 0],
                                          [1, 1, 0, 0, 0],
                                          [1, 1, 1, 0, 0],
                                          [1, 1, 0, 1, 0],
                                          [1, 1, 0, 1, 1]]  # fmt: skip


@pytest.mark.parametrize("backend", ["softmax", "kimi_linear"])
def test_each_code_depends_on_the_text_and_earlier_codes_only(backend):
    model = drawing_model(attention_backend=backend)
    text = torch.randint(4, 40, (2, 5), generator=torch.Generator().manual_seed(1))
    codes = torch.randint(0, 12, (2, 16), generator=torch.Generator().manual_seed(2))
    edited = codes.clone()
    edited[:, 9] = (codes[:, 9] + 1) % 12
    with torch.no_grad():
        before, after = model.code_logits(text, None, codes[:, :-1]), model.code_logits(text, None, edited[:, :-1])
        other_text = model.code_logits((text + 1 - 4) % 36 + 4, None, codes[:, :-1])
    assert_close("logits up to code 9", before[:, :10], after[:, :10], atol=1e-6)  # logits[j] predict code j
    assert (before[:, 10:] - after[:, 10:]).abs().max() > 1e-4
    assert (before - other_text).abs().max() > 1e-4  # the description matters (fused layers)


@pytest.mark.parametrize("backend", ["softmax", "kimi_linear"])
def test_cached_drawing_gives_the_logits_of_the_full_forward(backend):
    """Descriptions of different lengths (right-padded): each code's logits, decoded over the cache, equal
    `code_logits` of the description alone with the codes drawn before it."""
    model = drawing_model(attention_backend=backend)
    text = torch.randint(4, 40, (3, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    seen = []
    hook = model.code_head.register_forward_hook(lambda module, args, out: seen.append(out.clone()))
    codes = model.draw(text * mask, mask)
    hook.remove()
    with torch.no_grad():
        batched = model.code_logits(text * mask, mask, codes[:, :-1])  # padding never changes a row's logits
    for b in range(3):
        alone = text[b : b + 1, : int(mask[b].sum())]
        with torch.no_grad():
            reference = model.code_logits(alone, None, codes[b : b + 1, :-1])[0]
        assert_close(f"row {b} code logits", torch.stack([step[b] for step in seen]), reference, atol=1e-4)
        assert_close(f"row {b} code logits in a padded batch", batched[b], reference, atol=1e-4)
    sampled = [model.draw(text, temperature=1.0, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(sampled[0], sampled[1]) and not torch.equal(sampled[0], model.draw(text))


def test_guided_drawing_extrapolates_from_the_null_description():
    """guidance g: each code is the argmax of u + g·(c − u), c the description's logits and u those of [BOS] alone,
    both given the same codes so far; g = 1 is the plain drawing."""
    model = drawing_model()
    text = torch.randint(4, 40, (2, 5), generator=torch.Generator().manual_seed(1))
    assert torch.equal(model.draw(text, guidance=1.0), model.draw(text))
    codes = model.draw(text, guidance=2.5)
    null = torch.full((1, 1), model.config.bos_token_id)
    with torch.no_grad():
        for b in range(2):
            c = model.code_logits(text[b : b + 1], None, codes[b : b + 1, :-1])[0]
            u = model.code_logits(null, None, codes[b : b + 1, :-1])[0]
            assert torch.equal((u + 2.5 * (c - u)).argmax(-1), codes[b])
    assert not torch.equal(codes, model.draw(text))  # guidance changes the drawing of this random model
    with pytest.raises(ConfigError, match="guidance must be > 0"):
        model.draw(text, guidance=0.0)


def test_draw_follows_the_greedy_logits_and_the_loss_trains_the_code_head():
    model = drawing_model()
    text = torch.randint(4, 40, (2, 5), generator=torch.Generator().manual_seed(1))
    codes = model.draw(text)
    assert codes.shape == (2, 16)
    with torch.no_grad():
        logits = model.code_logits(text, None, codes[:, :-1])
    assert torch.equal(logits.argmax(-1), codes)
    out = model.train()(draw_input_ids=text, draw_codes=codes)
    out.draw_loss.backward()
    assert model.code_head.weight.grad.abs().sum() > 0 and model.model.code_embed.weight.grad.abs().sum() > 0
    with pytest.raises(ShapeError, match="16 codes given; an image has 16"):
        model.code_logits(text, None, codes)
    with pytest.raises(ShapeError, match="right-padded"):
        model.code_logits(text, torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]), codes[:, :-1])
    with pytest.raises(ShapeError, match="right-padded"):
        model.draw(text, torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]))
    with pytest.raises(ShapeError, match="a description has no tokens"):
        model.draw(text, torch.tensor([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]))
    with pytest.raises(ConfigError, match="not built to draw"):
        drawing_model(image_codebook_size=0).code_logits(text, None, codes[:, :-1])


def test_judge_reads_real_scenes(tiny_catalogs):
    generator = SceneGenerator(tiny_catalogs, SceneConfig(image_size=32))
    judge = train_judge(generator, steps=120, batch=16, progress=False)
    scenes = [generator.scene("test", i) for i in range(40)]
    real = judge_images(judge, [generator.render(s, "test") for s in scenes], scenes)
    blank = judge_images(judge, [np.full((32, 32, 3), 40, dtype=np.uint8)] * 40, scenes)
    assert real["empty_cell_accuracy"] > 0.9 and real["colour_accuracy"] > 0.8
    assert real["object_accuracy"] > blank["object_accuracy"] + 0.3 and blank["empty_cell_accuracy"] > 0.9
    assert scene_cells(np.zeros((32, 32, 3))).shape == (4, 16, 16, 3)


def test_frechet_distance_is_zero_for_one_set_and_grows_with_a_shift():
    a = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + 1) == pytest.approx(4, rel=0.01)
