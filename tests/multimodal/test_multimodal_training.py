"""Multi-task training learns all three tasks, resumes exactly, and the evaluation scores what it should."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from frontier.errors import ConfigError
from frontier.multimodal.configuration_unified import UnifiedMultimodalConfig
from frontier.multimodal.evaluation import cider_scores, compare, evaluate, hits_at, token_f1
from frontier.multimodal.modeling_unified import UnifiedMultimodalForConditionalGeneration
from frontier.multimodal.processing import build_tokenizer
from frontier.multimodal.scenes import SceneConfig, SceneGenerator
from frontier.multimodal.training import (
    CPU_ATTENTION_FLOPS,
    MultimodalTrainConfig,
    batch_positions,
    few_shot_scene_at,
    step_batch,
    train_unified,
)


@pytest.fixture
def setup(tiny_catalogs):
    generator = SceneGenerator(tiny_catalogs, SceneConfig(image_size=32, heldout_pairs=(("sneaker", "red"),)))
    tokenizer = build_tokenizer(generator.vocabulary())
    return generator, tokenizer


def new_model(tokenizer) -> UnifiedMultimodalForConditionalGeneration:
    torch.manual_seed(0)
    config = UnifiedMultimodalConfig(vocab_size=len(tokenizer), image_size=32, patch_size=8, hidden_size=48,
                                     intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, fusion_layer=1,
                                     max_text_positions=48, projection_dim=16)  # fmt: skip
    return UnifiedMultimodalForConditionalGeneration(config)


def read_log(folder):
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


def test_training_lowers_both_losses_and_saves_a_loadable_model(setup, tmp_path):
    generator, tokenizer = setup
    config = MultimodalTrainConfig(steps=60, batch_size=12, lr=3e-3, warmup_steps=5, checkpoint_every=30)
    train_unified(new_model(tokenizer), tokenizer, generator, config, tmp_path, progress=False)
    log = read_log(tmp_path)
    for part in ("lm_loss", "retrieval_loss"):
        first, last = (sum(r[part] for r in rows) / 10 for rows in (log[:10], log[-10:]))
        assert last < 0.7 * first, (part, first, last)
    loaded = UnifiedMultimodalForConditionalGeneration.from_pretrained(tmp_path / "final")
    metrics = evaluate(loaded, tokenizer, generator, "test", 24)
    assert metrics["caption_token_f1"] > 0.3 and metrics["retrieval_image_to_text_r5"] > 5 / 24
    assert metrics["vqa_novel_questions"] == 0  # a test scene holds no held-out combination
    zero_shot = evaluate(loaded, tokenizer, generator, "zero-shot", 24, tasks=("vqa",))
    novel = zero_shot["items"]["vqa_novel"]  # the questions that name the red sneaker of each zero-shot scene
    assert 0 < zero_shot["vqa_novel_questions"] == sum(novel) < zero_shot["vqa_questions"]
    assert zero_shot["vqa_novel_correct"] == sum(
        c for c, n in zip(zero_shot["items"]["vqa_correct"], novel, strict=True) if n
    )
    # The per-item outcomes (for paired comparisons) add up to the reported figures.
    items = metrics["items"]
    assert sum(items["vqa_correct"]) == metrics["vqa_correct"] == sum(
        round(acc * n) for acc, n in zip(metrics["vqa_accuracy_by_type"].values(),
                                         metrics["vqa_questions_by_type"].values(), strict=True))  # fmt: skip
    assert len(items["vqa_scene"]) == metrics["vqa_questions"] and set(items["vqa_scene"]) == set(range(24))
    # The fingerprint names what was asked, not what was scored: a single-task evaluation pairs with this one.
    retrieval_only = evaluate(loaded, tokenizer, generator, "test", 24, tasks=("retrieval",))
    assert (
        retrieval_only["fingerprint"]
        == metrics["fingerprint"]
        != evaluate(loaded, tokenizer, generator, "test", 12)["fingerprint"]
    )
    assert sum(items["caption_token_f1"]) / 24 == pytest.approx(metrics["caption_token_f1"])
    mean_r1 = (metrics["retrieval_image_to_text_r1"] + metrics["retrieval_text_to_image_r1"]) / 2
    assert sum(items["retrieval_r1"]) / 24 == pytest.approx(mean_r1)


def test_interrupted_training_resumes_to_the_same_weights(setup, tmp_path):
    generator, tokenizer = setup
    config = MultimodalTrainConfig(steps=6, batch_size=4, checkpoint_every=3, warmup_steps=1)
    straight = train_unified(new_model(tokenizer), tokenizer, generator, config, tmp_path / "a", progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for folder in ("checkpoint-6", "final"):  # as if the run had died after step 5
        shutil.rmtree(tmp_path / "b" / folder)
    resumed = train_unified(new_model(tokenizer), tokenizer, generator, config, tmp_path / "b", progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    losses = [[(r["step"], round(r["loss"], 4)) for r in read_log(tmp_path / run)] for run in "ab"]
    assert losses[0] == losses[1] and len(losses[1]) == 6


def test_some_drawing_rows_learn_from_the_null_description(setup):
    from frontier.multimodal.codebook import fit_codebook

    generator, tokenizer = setup
    images = np.stack([generator.render(generator.scene("train", i), "train") for i in range(8)])
    codebook = fit_codebook(images, patch_size=8, size=8, iterations=2)
    plain = MultimodalTrainConfig(batch_size=40, tasks=("draw",))
    dropped = MultimodalTrainConfig(batch_size=40, tasks=("draw",), draw_unconditional=0.5)
    null = [tokenizer.bos_token_id]
    rows = {}
    for name, config in (("plain", plain), ("dropped", dropped)):
        batch = step_batch(generator, tokenizer, config, 0, codebook)
        rows[name] = [
            ids[: int(n)].tolist()
            for ids, n in zip(batch["draw_input_ids"], batch["draw_attention_mask"].sum(1), strict=True)
        ]
    assert null not in rows["plain"]
    nulls = sum(row == null for row in rows["dropped"])
    assert 10 <= nulls <= 30
    kept = [a for a, b in zip(rows["plain"], rows["dropped"], strict=True) if b != null]
    assert kept == [b for b in rows["dropped"] if b != null]  # the other rows keep their captions
    with pytest.raises(ConfigError, match="draw_unconditional is a share"):
        MultimodalTrainConfig(draw_unconditional=1.0)


def test_single_task_batches_hold_only_that_task(setup):
    generator, tokenizer = setup
    retrieval = step_batch(generator, tokenizer, MultimodalTrainConfig(batch_size=4, tasks=("retrieval",)), 0)
    assert set(retrieval) == {"retrieval_pixel_values", "retrieval_input_ids", "retrieval_attention_mask"}
    config = MultimodalTrainConfig(batch_size=4, tasks=("caption", "vqa"))
    both = step_batch(generator, tokenizer, config, 0, pack=False)
    assert len(both["input_ids"]) == 8 and "retrieval_input_ids" not in both
    packed = step_batch(generator, tokenizer, config, 0)
    assert len(packed["input_ids"]) == 4 and packed["segment_ids"].max() == 1
    assert packed["attention_mask"].sum() == both["attention_mask"].sum()  # the same texts, half the image passes
    with pytest.raises(ConfigError, match="tasks must be a non-empty subset"):
        MultimodalTrainConfig(tasks=("segmentation",))


def test_a_packed_step_runs_each_image_once(setup):
    generator, tokenizer = setup
    config = MultimodalTrainConfig(batch_size=4)
    packed, rows = (step_batch(generator, tokenizer, config, 0, pack=pack) for pack in (True, False))
    assert "retrieval_pixel_values" not in packed and len(rows["retrieval_pixel_values"]) == 4
    patches = 16  # 32×32 images in 8×8 patches
    texts = int(packed["attention_mask"].sum() + packed["retrieval_attention_mask"].sum())
    assert batch_positions(packed, patches) == texts + 4 * patches
    assert batch_positions(rows, patches) == texts + 3 * 4 * patches


def test_each_step_logs_the_flops_of_its_own_batch_shape(setup, tmp_path):
    generator, tokenizer = setup
    config = MultimodalTrainConfig(steps=6, batch_size=4, warmup_steps=1, checkpoint_every=6)
    model = new_model(tokenizer)
    train_unified(model, tokenizer, generator, config, tmp_path, progress=False)
    logged = [r["flops"] for r in read_log(tmp_path)]
    counted = []
    for step in range(config.steps):  # counted afresh: FLOPs depend on shapes, not weights
        batch = step_batch(generator, tokenizer, config, step, pack=model.config.packs_texts)
        with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
            out = model(**batch)
            (out.lm_loss + out.retrieval_loss).backward()
        counted.append(counter.get_total_flops())
    assert len(set(counted)) > 1  # padded lengths differ between these steps, so must their FLOPs
    assert logged == pytest.approx(counted, rel=1e-6)


def test_every_few_shot_scene_is_trained_on_and_no_other_step_draws_one(tiny_catalogs):
    generator = SceneGenerator(tiny_catalogs, SceneConfig(image_size=32, few_shot_names=("apple",), few_shot_k=3))
    config = MultimodalTrainConfig(steps=120, batch_size=4, warmup_steps=10)
    shown = {step: few_shot_scene_at(generator, config, step) for step in range(config.steps)}
    placed = [(step, scene) for step, scene in shown.items() if scene is not None]
    assert placed[:4] == [(10, 0), (30, 1), (50, 2), (70, 0)]  # from the end of the warmup, every 20 steps, in turn
    tokenizer = build_tokenizer(generator.vocabulary())
    for step in (9, 10, 11, 30):
        batch = step_batch(generator, tokenizer, config, step)
        apples = sum("apple" in text for text in tokenizer.batch_decode(batch["retrieval_input_ids"]))
        assert apples == (shown[step] is not None), step  # a few-shot scene only where placed, one per such step


def test_processes_share_a_step_s_scenes(setup):
    generator, tokenizer = setup
    config = MultimodalTrainConfig(batch_size=5, tasks=("retrieval",))
    whole = step_batch(generator, tokenizer, config, 3)["retrieval_pixel_values"]
    shards = [step_batch(generator, tokenizer, config, 3, shard=(i, 2))["retrieval_pixel_values"] for i in range(2)]
    assert torch.equal(shards[0], whole[0::2]) and torch.equal(shards[1], whole[1::2])


def test_text_metrics():
    assert token_f1("a red sneaker", "a red sneaker") == 1.0
    assert token_f1("a bag", "a red sneaker") == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    refs = ["a red sneaker in the top left", "a bag in the top right", "a coat in the bottom left"]
    exact, swapped, empty = cider_scores([refs[0], refs[0], ""], refs)
    assert exact == pytest.approx(10.0) and 0 < swapped < exact and empty == 0.0
    similarity = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.7, 0.0], [0.0, 0.0, 1.0]])
    assert hits_at(similarity, torch.eye(3, dtype=torch.bool), 1).tolist() == [True, False, True]
    assert hits_at(similarity, torch.eye(3, dtype=torch.bool), 2).all()


def vqa_metrics(scenes: list[int], correct: list[int], fingerprint: str = "pool") -> dict:
    items = {"vqa_scene": scenes, "vqa_correct": correct}
    return {"split": "test", "scenes": len(set(scenes)), "fingerprint": fingerprint, "items": items}


def test_a_tie_passes_only_once_the_paired_interval_rules_out_a_loss():
    def tied(scenes: int) -> tuple[dict, dict]:
        # One question per scene: of every 50, the first model alone gets 2 right and the second another 2.
        diff = ([1] * 2 + [-1] * 2 + [0] * 46) * (scenes // 50)
        ours, theirs = [int(d >= 0) for d in diff], [int(d <= 0) for d in diff]
        return vqa_metrics(list(range(scenes)), ours), vqa_metrics(list(range(scenes)), theirs)

    few, many = compare(*tied(200), "vqa"), compare(*tied(5000), "vqa")
    assert few.mean == many.mean == 0
    assert not few.holds and "interval too wide to rule out a loss" in str(few)
    assert many.holds and "no loss beyond the margin" in str(many) and "paired over 5000 questions" in str(many)
    # No item differs: the t-interval has no width, and the rule of three (±3/n scenes) bounds it instead.
    few_agree = compare(vqa_metrics(list(range(3)), [1] * 3), vqa_metrics(list(range(3)), [1] * 3), "vqa")
    assert not few_agree.holds and str(few_agree).startswith("difference +0.0 [-100.0, +100.0] (interval too wide")
    many_agree = compare(vqa_metrics(list(range(400)), [1] * 400), vqa_metrics(list(range(400)), [1] * 400), "vqa")
    assert many_agree.holds and str(many_agree).startswith("difference +0.0 [-0.8, +0.8] (no loss beyond the margin")
    lone = compare(vqa_metrics([0, 0], [1, 0]), vqa_metrics([0, 0], [0, 0]), "vqa")
    assert not lone.holds and "too few items for an interval" in str(lone)


def test_comparing_models_scored_on_different_items_is_an_error():
    with pytest.raises(ConfigError, match="different scenes or questions"):
        compare(vqa_metrics([0, 0, 1], [1, 0, 1]), vqa_metrics([0, 1, 1], [1, 0, 1]), "vqa")
    with pytest.raises(ConfigError, match="different scenes or questions"):
        compare(vqa_metrics([0, 1], [1, 0]), vqa_metrics([0, 1], [1, 0], fingerprint="another pool"), "vqa")
    written_before = vqa_metrics([0, 1], [1, 0])
    del written_before["fingerprint"]
    with pytest.raises(ConfigError, match="written before"):
        compare(vqa_metrics([0, 1], [1, 0]), written_before, "vqa")
    with pytest.raises(ConfigError, match=r"different evaluations \(versions 2 and 1"):
        compare({**vqa_metrics([0, 1], [1, 0]), "evaluation": 2}, vqa_metrics([0, 1], [1, 0]), "vqa")
    with pytest.raises(ConfigError, match="no per-item caption outcomes"):
        compare(vqa_metrics([0], [1]), vqa_metrics([0], [1]), "caption")
    with pytest.raises(ConfigError, match="unknown task 'draw'"):
        compare(vqa_metrics([0], [1]), vqa_metrics([0], [1]), "draw")
