"""`frontier multimodal …` end to end on the stand-in catalogs (no package fetch)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import frontier.multimodal.catalog as catalog
from frontier.cli import main


@pytest.fixture
def stand_in_pool(tiny_catalogs, monkeypatch):
    """The CLI's default pool replaced by the stand-in catalogs (grey items, an apple, a flag)."""
    monkeypatch.setattr(catalog, "default_catalogs", lambda: tiny_catalogs)
    monkeypatch.setattr(catalog, "FASHION_CLASSES", tuple(sorted({o.name for o in tiny_catalogs["train"]
                                                                   if o.source == "fashion-mnist"})))  # fmt: skip
    monkeypatch.setattr(catalog, "DEFAULT_EMOJI", ("apple",))
    monkeypatch.setattr(catalog, "DEFAULT_FLAGS", ("flag of france",))
    monkeypatch.setattr(catalog, "DEFAULT_FEW_SHOT", ("apple",))


@pytest.fixture
def trained(stand_in_pool, tmp_path):
    code = main(["multimodal", "train", "--output", str(tmp_path / "run"), "--steps", "3", "--batch-size", "4",
                 "--hidden-size", "32", "--layers", "2", "--fusion-layer", "1", "--image-size", "32",
                 "--checkpoint-every", "3", "--warmup-steps", "1"])  # fmt: skip
    assert code == 0
    return tmp_path / "run" / "final"


def test_scenes_writes_images_and_their_texts(stand_in_pool, tmp_path, capsys):
    assert main(["multimodal", "scenes", "--split", "zero-shot", "--count", "3", "--output", str(tmp_path)]) == 0
    records = [json.loads(line) for line in (tmp_path / "scenes.jsonl").read_text().splitlines()]
    assert [r["image"] for r in records] == ["zero-shot-0000.png", "zero-shot-0001.png", "zero-shot-0002.png"]
    assert Image.open(tmp_path / "zero-shot-0000.png").size == (64, 64)
    assert all(r["caption"] and r["questions"][0]["answer"] for r in records)


def test_train_eval_ask_caption_search(trained, tmp_path, capsys):
    assert (trained / "scene_config.json").is_file() and (trained / "tokenizer.json").is_file()
    summary = json.loads((trained.parent / "train-summary.json").read_text())
    assert summary["steps"] == 3 and summary["positions"] > 3 * 4 * 16 and summary["peak_rss_mib"] > 50
    # Forward and backward cost about 6 FLOPs per parameter a position passes through (the embeddings it skips).
    assert 2 * summary["parameters"] < summary["flops"] / summary["positions"] < 6 * summary["parameters"]
    metrics_path = tmp_path / "metrics.json"
    assert main(["multimodal", "eval", "--model", str(trained), "--scenes", "4", "--output", str(metrics_path)]) == 0
    assert "VQA accuracy" in capsys.readouterr().out
    assert 0 <= json.loads(metrics_path.read_text())["retrieval_text_to_image_r5"] <= 1
    assert len(json.loads(metrics_path.read_text())["fingerprint"]) == 16
    # A model compared with itself: every difference is exactly 0, which bounds nothing, so "A ≥ B" is not shown.
    assert main(["multimodal", "compare", str(metrics_path), str(metrics_path)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "VQA accuracy", "caption token F1", "retrieval Recall@1, mean of both directions"]  # fmt: skip
    assert all("difference +0" in line and line.endswith("A ≥ B not shown") for line in lines)
    assert main(["multimodal", "compare", str(metrics_path), str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    other = json.loads(metrics_path.read_text())
    other["fingerprint"] = "another pool"
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["multimodal", "compare", str(metrics_path), str(tmp_path / "other.json")]) == 2
    captured = capsys.readouterr()
    assert "different scenes or questions" in captured.err and not captured.out  # nothing printed before the check
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 60 * i, dtype=np.uint8)).save(images / f"{i}.png")
    assert main(["multimodal", "ask", str(images / "0.png"), "What is in the top left?", "--model", str(trained)]) == 0
    assert main(["multimodal", "caption", str(images / "1.png"), "--model", str(trained)]) == 0
    capsys.readouterr()
    assert main(["multimodal", "search", "a bag in the top left", "--images", str(images), "--model", str(trained),
                 "--top-k", "2"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.split()[1].startswith(str(images)) for line in lines)


def test_a_resumed_run_sums_its_segments_and_keeps_the_largest_logged_peak(stand_in_pool, tmp_path, capsys):
    args = ["multimodal", "train", "--output", str(tmp_path / "run"), "--steps", "4", "--batch-size", "4",
            "--hidden-size", "32", "--layers", "2", "--fusion-layer", "1", "--image-size", "32",
            "--checkpoint-every", "2", "--warmup-steps", "1"]  # fmt: skip
    assert main(args) == 0
    log_path = tmp_path / "run" / "train_log.jsonl"
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and all(r["peak_rss_mib"] > 50 for r in records)
    # Interrupted after the checkpoint at step 2, in a process whose peak was far above this one's.
    for folder in ("checkpoint-4", "final"):
        shutil.rmtree(tmp_path / "run" / folder)
    earlier = [{**r, "peak_rss_mib": 1e6, "seconds": 100.0} for r in records[:2]]
    log_path.write_text("".join(json.dumps(r) + "\n" for r in earlier + records[2:]))
    assert main(args) == 0
    summary = json.loads((tmp_path / "run" / "train-summary.json").read_text())
    assert summary["steps"] == 4 and summary["peak_rss_mib"] == 1e6
    assert 200 < summary["train_seconds"] < 300  # two earlier steps of 100 s and two steps of this process

    # A rerun of the finished run trains nothing: the peak stays the steps' own, not this process's.
    small = [{**json.loads(line), "peak_rss_mib": 1.0} for line in log_path.read_text().splitlines()]
    log_path.write_text("".join(json.dumps(r) + "\n" for r in small))
    assert main(args) == 0
    assert json.loads((tmp_path / "run" / "train-summary.json").read_text())["peak_rss_mib"] == 1.0

    # Another attention pattern keeps every weight's shape: resuming under it is refused, not done silently.
    shutil.rmtree(tmp_path / "run" / "final")
    other = list(args)
    other[other.index("--fusion-layer") + 1] = "2"
    capsys.readouterr()
    assert main(other) == 2
    assert "trained with a different fusion_layer" in capsys.readouterr().err


def test_bad_input_gets_one_line_errors(trained, tmp_path, capsys):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(small)
    assert main(["multimodal", "caption", str(small), "--model", str(trained)]) == 2
    assert "is 16×16; the model reads 32×32" in capsys.readouterr().err
    right = tmp_path / "right.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(right)
    assert main(["multimodal", "ask", str(right), "is there a zebra?", "--model", str(trained)]) == 2
    assert "words the model does not know: zebra" in capsys.readouterr().err
    assert main(["multimodal", "eval", "--model", str(tmp_path)]) == 2
    assert "is not a trained multimodal model" in capsys.readouterr().err
    from safetensors.torch import load_file, save_file

    weights = load_file(trained / "model.safetensors")
    save_file({k.replace("branches.0.", ""): v for k, v in weights.items()}, trained / "model.safetensors")
    assert main(["multimodal", "caption", str(right), "--model", str(trained)]) == 2
    assert "does not hold this frontier's multimodal weights" in capsys.readouterr().err


def test_draw_task_trains_a_codebook_and_draws(stand_in_pool, tmp_path, capsys, monkeypatch):
    import frontier.multimodal.drawing as drawing

    run = tmp_path / "run"
    assert main(["multimodal", "train", "--output", str(run), "--steps", "3", "--batch-size", "4", "--hidden-size",
                 "32", "--layers", "2", "--fusion-layer", "1", "--image-size", "32", "--warmup-steps", "1",
                 "--tasks", "caption,draw", "--codebook-size", "16", "--codebook-images", "10"]) == 0  # fmt: skip
    final = run / "final"
    assert (final / "codebook.safetensors").is_file()
    assert main(["multimodal", "draw", "a bag in the top left", "--model", str(final), "--output",
                 str(tmp_path / "bag.png"), "--samples", "3", "--temperature", "1.0", "--scale", "2"]) == 0  # fmt: skip
    assert Image.open(tmp_path / "bag.png").size == (3 * 32 * 2, 32 * 2)
    assert main(["multimodal", "draw", "a bag", "--model", str(final), "--output", str(tmp_path / "x.png"),
                 "--samples", "2"]) == 2  # fmt: skip
    assert "add --temperature" in capsys.readouterr().err
    real_train_judge = drawing.train_judge
    monkeypatch.setattr(drawing, "train_judge", lambda generator, seed: real_train_judge(generator, steps=5))
    assert main(["multimodal", "eval", "--model", str(final), "--scenes", "4", "--draw", "--grid",
                 str(tmp_path / "grid.png")]) == 0  # fmt: skip
    assert "drawing, judged on drawn images" in capsys.readouterr().out
    assert Image.open(tmp_path / "grid.png").size == (4 * 32 * 2, 3 * 32 * 2)


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(tmp_path, monkeypatch):
    """DDP over gloo on the CPU (`--multi_gpu`, no GPU visible) on the real default pool, fetched into a fresh cache;
    a caption-only run leaves the retrieval projections unused, which DDP accepts only when told."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "FRONTIER_CACHE_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "frontier",
               "multimodal", "train", "--output", str(tmp_path / "run"), "--steps", "2", "--batch-size", "4",
               "--hidden-size", "32", "--layers", "2", "--fusion-layer", "1", "--tasks", "caption",
               "--warmup-steps", "1", "--checkpoint-every", "1"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("model saved to") == 1 and "2 processes" in done.stderr
    summary = json.loads((tmp_path / "run" / "train-summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["positions"] > 2 * 4 * 64  # both processes' scenes (64 patches each), not the main one's alone
