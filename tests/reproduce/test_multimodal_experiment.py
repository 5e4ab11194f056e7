"""The multimodal experiment's verdicts follow its figures (rows built from stored training and score records)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from frontier.reproduce.experiments.multimodal import SEPARATE, claim_rows, plot
from frontier.reproduce.registry import Mode, RunContext, Verdict


def items(share: float, count: int) -> list[int]:
    """`count` 0/1 outcomes, the first `share` of them right: two models' items differ only where their shares do."""
    right = round(share * count)
    return [1] * right + [0] * (count - right)


def caption_f1(mean: float) -> list[float]:
    """100 per-scene token F1 values around `mean` (their mean exactly), spread differently for each mean."""
    noise = np.random.default_rng(round(1000 * mean)).normal(0.0, 0.01, 100)
    return (mean + noise - noise.mean()).tolist()


def scores(vqa: float, f1: float, r1: float) -> dict:
    """Metrics of 100 scenes with two questions each, as `evaluate()` reports them."""
    per_item = {"vqa_scene": [i // 2 for i in range(200)], "vqa_correct": items(vqa, 200),
                "caption_token_f1": caption_f1(f1), "retrieval_r1": items(r1, 100)}  # fmt: skip
    split = {"split": "test", "scenes": 100, "fingerprint": "pool", "vqa_accuracy": vqa,
             "vqa_correct": round(vqa * 200), "vqa_questions": 200, "caption_token_f1": f1,
             "caption_cider": 5 * f1, "caption_exact_match": f1 / 2, "retrieval_image_to_text_r1": r1,
             "retrieval_text_to_image_r1": r1, "retrieval_image_to_text_r5": min(1, 2 * r1),
             "retrieval_text_to_image_r5": min(1, 2 * r1),
             "items": per_item}  # fmt: skip
    # Held-out splits: overall accuracy and, on the 100 questions about the held-out object, a different one, so
    # the rows show which of the two they judge by.
    return {"test": {**split, "vqa_novel_correct": 0, "vqa_novel_questions": 0},
            "zero-shot": {**split, "vqa_accuracy": vqa - 0.05, "vqa_correct": round((vqa - 0.05) * 200),
                          "retrieval_image_to_text_r1": r1 - 0.1, "caption_cider": 4 * f1,
                          "vqa_novel_correct": round((vqa - 0.5) * 100), "vqa_novel_questions": 100},
            "few-shot": {**split, "vqa_accuracy": vqa - 0.2, "vqa_correct": round((vqa - 0.2) * 200),
                         "vqa_novel_correct": round((vqa - 0.05) * 100), "vqa_novel_questions": 100}}  # fmt: skip


def training(parameters: int, positions: int, seconds: float, memory: float) -> dict:
    return {"parameters": parameters, "positions": positions, "flops": 6 * parameters * positions,
            "train_seconds": seconds, "median_step_seconds": seconds / 100, "peak_rss_mib": memory}  # fmt: skip


def test_rows_pass_and_fail_with_the_numbers(tmp_path: Path):
    all_scores = {"unified": scores(0.8, 0.9, 0.5), "late fusion": scores(0.7, 0.95, 0.4),
                  **{name: scores(0.75, 0.85, 0.6) for name in SEPARATE}}  # fmt: skip
    trained = {"unified": training(1000, 300, 30.0, 500), "late fusion": training(1000, 300, 28.0, 480),
               **{name: training(1000, 150, 15.0, 450) for name in SEPARATE}}  # fmt: skip
    rows = claim_rows(trained, all_scores)
    assert [r.verdict for r in rows[:3]] == [Verdict.PASS, Verdict.FAIL, Verdict.PASS]  # VQA, captions, retrieval
    assert "difference +10.0 [" in rows[0].measured and "(better; paired over 200 questions)" in rows[0].measured
    assert "difference -0.050 [-0.05" in rows[1].measured and "(behind;" in rows[1].measured
    compute, memory = rows[3], rows[4]
    assert compute.verdict is Verdict.PASS and "0.67×" in compute.measured  # 300 vs 450 positions
    assert "0.00 vs 0.00 TFLOPs" in compute.measured  # 1.8M vs 2.7M FLOPs
    assert memory.verdict is Verdict.PASS and "500 vs 1350 MiB" in memory.measured
    against_late_fusion = rows[5]
    assert against_late_fusion.verdict is Verdict.NOT_COMPARABLE
    assert "median step 0.300 vs 0.280 s; 30 vs 28 s in all; 500 vs 480 MiB peak" in against_late_fusion.measured
    assert "median step 0.300 vs 0.450 s (the three added)" in compute.measured
    single = [r for r in rows if r.claim.startswith("multi-task")]
    assert [r.verdict for r in single] == [Verdict.PASS, Verdict.PASS, Verdict.FAIL]
    zero, few = rows[-2], rows[-1]
    assert zero.verdict is Verdict.FAIL and "30.0% [" in zero.measured and "gap 50.0 points" in zero.measured
    assert few.verdict is Verdict.PASS and "gap 5.0 points" in few.measured
    assert "CIDEr-style 3.60 vs 4.50; retrieval R@1 45.0% vs 50.0%, R@5 100.0% vs 100.0%" in zero.measured
    ctx = RunContext(mode=Mode.QUICK, seed=0, out_dir=tmp_path, progress=False)
    figures = plot(ctx, trained, all_scores)
    assert all((tmp_path / f).is_file() for f in figures) and len(figures) == 4


def test_the_depth_matched_model_is_compared_within_late_fusions_parameters():
    from frontier.reproduce.experiments.multimodal import DEPTH_MATCHED

    all_scores = {
        "unified": scores(0.7, 0.85, 0.4),
        "late fusion": scores(0.8, 0.9, 0.5),
        DEPTH_MATCHED: scores(0.85, 0.95, 0.6),
        **{name: scores(0.75, 0.85, 0.6) for name in SEPARATE},
    }
    trained = {"unified": training(1000, 300, 30.0, 500), "late fusion": training(1000, 300, 28.0, 480),
               DEPTH_MATCHED: training(990, 300, 20.0, 470),
               **{name: training(1000, 150, 15.0, 450) for name in SEPARATE}}  # fmt: skip
    rows = claim_rows(trained, all_scores)
    assert [r.verdict for r in rows[:6]] == [Verdict.FAIL] * 3 + [Verdict.PASS] * 3
    assert rows[3].claim.startswith("unified at late fusion's depth ≥ late fusion")
    assert "990 vs 1,000 parameters" in rows[3].measured
    trained[DEPTH_MATCHED]["parameters"] = 1001  # one parameter over late fusion's budget: no comparison holds
    over = claim_rows(trained, all_scores)[3:6]
    assert all(r.verdict is Verdict.FAIL and "(MORE than late fusion)" in r.measured for r in over)


def test_a_resumed_run_reuses_the_stored_scores_of_unchanged_weights(tmp_path: Path, monkeypatch):
    """Training resumes inside `frontier multimodal train`; scoring is skipped where a model's scores are stored for
    the weights it has now."""
    import frontier.multimodal.cli as multimodal_cli
    import frontier.multimodal.evaluation as evaluation
    import frontier.reproduce.experiments.multimodal as experiment

    evaluated = []

    def train(folder: Path, args, tasks, scale):
        (folder / "final").mkdir(parents=True, exist_ok=True)
        if not (folder / "final" / "model.safetensors").is_file():
            (folder / "final" / "model.safetensors").write_bytes(b"weights")
        return {**training(1000, 300, 30.0, 500), "final_lm_loss": 1.0, "final_retrieval_loss": 1.0}

    def evaluate(model, tokenizer, generator, split, count, tasks):
        evaluated.append((model, split))
        return {**scores(0.8, 0.9, 0.5)[split], "call": len(evaluated)}  # every call differs

    monkeypatch.setattr(experiment, "train_in_a_process_of_its_own", train)
    monkeypatch.setattr(multimodal_cli, "load_trained", lambda folder: (folder.parent.name, None))
    monkeypatch.setattr(multimodal_cli, "load_scene_generator", lambda folder: None)
    monkeypatch.setattr(evaluation, "evaluate", evaluate)
    ctx = RunContext(mode=Mode.QUICK, seed=0, out_dir=tmp_path, progress=False)
    scale = {"steps": 10, "batch": 2, "hidden": 16, "scenes": 100, "seed": 0}
    variants = {**experiment.VARIANTS, experiment.DEPTH_MATCHED: experiment.depth_matched(16)}
    first = experiment.run_multimodal(ctx, scale, variants)
    assert len(evaluated) == 3 * len(variants) and evaluated[0] == ("unified", "test")
    assert (tmp_path / "multimodal-runs" / "unified-at-late-fusion-s-depth" / "final").is_dir()  # a shell-safe name
    second = experiment.run_multimodal(ctx, scale, variants)
    assert len(evaluated) == 3 * len(variants) and second.metrics["scores"] == first.metrics["scores"]
    (tmp_path / "multimodal-runs" / "late-fusion" / "final" / "model.safetensors").write_bytes(b"trained further")
    third = experiment.run_multimodal(ctx, scale, variants)
    assert evaluated[3 * len(variants) :] == [("late-fusion", split) for split in ("test", "zero-shot", "few-shot")]
    assert third.metrics["scores"]["unified"] == first.metrics["scores"]["unified"]
    experiment.run_multimodal(ctx, {**scale, "scenes": 50}, variants)  # another scene count: scored anew
    assert len(evaluated) == 6 * len(variants) + 3


def test_each_model_is_scored_before_the_next_one_trains(tmp_path: Path, monkeypatch):
    """An interrupted `--full` run (hours of training) keeps the scores of every model it finished."""
    import frontier.multimodal.cli as multimodal_cli
    import frontier.multimodal.evaluation as evaluation
    import frontier.reproduce.experiments.multimodal as experiment

    trained = []

    def train(folder: Path, args, tasks, scale):
        if len(trained) == 2:
            raise KeyboardInterrupt  # the run is stopped while the third model trains
        trained.append(folder.name)
        (folder / "final").mkdir(parents=True, exist_ok=True)
        (folder / "final" / "model.safetensors").write_bytes(folder.name.encode())
        return {**training(1000, 300, 30.0, 500), "final_lm_loss": 1.0, "final_retrieval_loss": 1.0}

    monkeypatch.setattr(experiment, "train_in_a_process_of_its_own", train)
    monkeypatch.setattr(multimodal_cli, "load_trained", lambda folder: (folder.parent.name, None))
    monkeypatch.setattr(multimodal_cli, "load_scene_generator", lambda folder: None)
    monkeypatch.setattr(evaluation, "evaluate", lambda model, tokenizer, generator, split, count, tasks: {"n": count})
    ctx = RunContext(mode=Mode.QUICK, seed=0, out_dir=tmp_path, progress=False)
    scale = {"steps": 10, "batch": 2, "hidden": 16, "scenes": 100, "seed": 0}

    with pytest.raises(KeyboardInterrupt):
        experiment.run_multimodal(ctx, scale, experiment.VARIANTS)

    for name in trained:
        for split in ("test", "zero-shot", "few-shot"):
            assert (tmp_path / "multimodal-runs" / name / f"scores-{split}-100.json").is_file()


def test_a_child_run_keeps_only_its_newest_checkpoint(tmp_path: Path, monkeypatch):
    import subprocess

    import frontier.reproduce.experiments.multimodal as experiment

    commands = []

    def run(command, **kwargs):
        commands.append(command)
        folder = Path(command[command.index("--output") + 1])
        for step in (500, 1000, 1500):
            (folder / f"checkpoint-{step}").mkdir(parents=True)
        (folder / "train-summary.json").write_text('{"steps": 1500}')
        (folder / "train_log.jsonl").write_text(
            "".join(f'{{"step": {step}, "lm_loss": 0.5, "retrieval_loss": 0.1, "seconds": {seconds}}}\n'
                    for step, seconds in ((1498, 0.2), (1499, 9.0), (1500, 0.3)))
        )  # fmt: skip
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(experiment.subprocess, "run", run)
    args, tasks = experiment.depth_matched(128)
    scale = {"steps": 1500, "batch": 2, "hidden": 128, "scenes": 10, "seed": 0}
    summary = experiment.train_in_a_process_of_its_own(tmp_path / "run", args, tasks, scale)
    assert summary["final_lm_loss"] == 0.5 and summary["median_step_seconds"] == 0.3  # a slow step does not count
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-1500"]
    command = commands[0]
    assert command[command.index("--checkpoint-every") + 1] == "500"
    widths = [command[i + 1] for i, arg in enumerate(command) if arg == "--hidden-size"]
    assert widths == ["128", "160"]  # the variant's width comes last, and argparse keeps the last


def test_full_runs_report_the_fusion_depth_sweep_and_the_kimi_linear_backbone():
    depth = {"fusion from layer 0": 0.6, "fusion from layer 1": 0.7, "fusion from layer 3": 0.75, "no fusion": 0.5}
    all_scores = {"unified": scores(0.8, 0.9, 0.5), "late fusion": scores(0.7, 0.95, 0.4),
                  "Kimi Linear layers": scores(0.85, 0.9, 0.5), **{n: scores(v, 0.9, 0.5) for n, v in depth.items()},
                  **{name: scores(0.75, 0.85, 0.6) for name in SEPARATE}}  # fmt: skip
    trained = {name: training(1000, 300, 30.0, 500) for name in all_scores}
    trained["Kimi Linear layers"] = training(1060, 300, 60.0, 520)
    rows = {r.claim.split(":")[0]: r for r in claim_rows(trained, all_scores)}
    sweep = rows["fusion depth N (text reads the image from layer N of 4; 4 = never)"]
    assert sweep.verdict is Verdict.NOT_COMPARABLE
    assert [part.split(":")[0] for part in sweep.measured.split("; ")] == ["N=0", "N=1", "N=2", "N=3", "N=4"]
    assert "N=2: 80.0%" in sweep.measured and "N=4: 50.0%" in sweep.measured
    kimi = rows["the same unified model on Kimi Linear layers (3 KDA "]
    assert "1,060 vs 1,000 parameters" in kimi.measured and "+5.0" in kimi.measured
