"""`frontier multimodal scenes | train | eval | compare | ask | caption | search | draw`: the unified model from the
command line."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from frontier.cli import positive_int
from frontier.errors import ConfigError
from frontier.io import atomic_write_json, atomic_write_text

SCENE_CONFIG_NAME = "scene_config.json"  # the scene generator's settings, beside a trained model
TRAIN_SUMMARY_NAME = "train-summary.json"  # parameters, steps, seconds, positions, FLOPs and peak memory of a run
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

MULTIMODAL_EXAMPLES = """examples:
  frontier multimodal scenes --split test --count 8 --output scenes/       # PNGs + their captions and questions
  frontier multimodal train --output runs/unified --steps 3000              # caption + VQA + retrieval at once
  frontier multimodal train --output runs/kda --backend kimi_linear         # Kimi Linear layers (3 KDA : 1 softmax)
  frontier multimodal eval --model runs/unified/final --split zero-shot    # held-out (item, colour), (item, cell) pairs
  frontier multimodal compare unified-test.json late-test.json     # paired differences of two `eval --output`s
  frontier multimodal ask --model runs/unified/final scenes/test-0000.png "what is in the top left?"
  frontier multimodal caption --model runs/unified/final scenes/test-0000.png
  frontier multimodal search --model runs/unified/final "a red sneaker in the top left" --images scenes/
  frontier multimodal train --output runs/draw --tasks caption,vqa,retrieval,draw   # also text → image
  frontier multimodal draw --model runs/draw/final "a red sneaker in the top left" --output sneaker.png
  frontier multimodal eval --model runs/draw/final --draw --grid samples.png       # judge the drawings
  (the first run fetches Fashion-MNIST, emoji and flag images by package name into frontier's cache)
"""


def add_multimodal_commands(commands, parser_class) -> None:
    multimodal = commands.add_parser(
        "multimodal", help="the unified multimodal model: scenes, training, evaluation, questions, captions, search",
        epilog=MULTIMODAL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = multimodal.add_subparsers(dest="multimodal_command", metavar="COMMAND", parser_class=parser_class)

    scenes = sub.add_parser("scenes", help="write scenes as PNG files with their captions and questions (JSONL)")
    scenes.add_argument("--split", default="test", help="train, test, zero-shot or few-shot (default test)")
    scenes.add_argument("--count", type=positive_int, default=8)
    scenes.add_argument("--output", type=Path, required=True, help="folder for PNGs and scenes.jsonl")
    scenes.set_defaults(handler=run_scenes)

    train = sub.add_parser("train", help="train the unified model on scenes (resumable; also under accelerate launch)")
    train.add_argument("--output", type=Path, required=True, help="run folder; the model lands in OUTPUT/final")
    train.add_argument("--steps", type=positive_int, default=3000)
    train.add_argument("--batch-size", type=positive_int, default=32, help="scenes per step (default 32)")
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--warmup-steps", type=int, default=50)
    train.add_argument(
        "--tasks", default="caption,vqa,retrieval",
        help="comma-separated from caption, vqa, retrieval, draw (default: the first three; draw fits a codebook)",
    )  # fmt: skip
    train.add_argument("--codebook-size", type=positive_int, default=256, help="patch codes for the draw task")
    train.add_argument("--codebook-images", type=positive_int, default=300, help="training scenes k-means reads")
    train.add_argument("--retrieval-weight", type=float, default=0.1, help="weight of the contrastive loss (0.1)")
    train.add_argument(
        "--draw-unconditional", type=float, default=0.0,
        help="share of drawing rows trained with the null description, for --guidance at draw time (e.g. 0.1)",
    )  # fmt: skip
    train.add_argument("--hidden-size", type=positive_int, default=128)
    train.add_argument("--layers", type=positive_int, default=4)
    train.add_argument("--heads", type=positive_int, default=4)
    train.add_argument("--fusion-layer", type=int, default=2, help="first layer that attends across modalities")
    train.add_argument(
        "--modality-specific-layers", type=int, default=0,
        help="first layers with separate weights per modality (all of them + fusion at the last: late fusion)",
    )  # fmt: skip
    train.add_argument("--backend", choices=("softmax", "kimi_linear"), default="softmax")
    train.add_argument("--image-size", type=positive_int, default=64)
    train.add_argument("--patch-size", type=positive_int, default=8)
    train.add_argument("--checkpoint-every", type=positive_int, default=500)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=run_train)

    evaluate = sub.add_parser("eval", help="VQA, caption and retrieval scores on a split of scenes")
    evaluate.add_argument("--model", type=Path, required=True, help="a trained model folder (OUTPUT/final)")
    evaluate.add_argument("--split", default="test", help="test, zero-shot, few-shot or train (default test)")
    evaluate.add_argument("--scenes", type=positive_int, default=500)
    evaluate.add_argument("--output", type=Path, default=None, help="also write the metrics here as JSON")
    evaluate.add_argument("--draw", action="store_true", help="also draw each scene from its caption and judge it")
    evaluate.add_argument("--grid", type=Path, default=None, help="with --draw: PNG of real / codebook / drawn rows")
    evaluate.add_argument("--guidance", type=float, default=1.0, help="with --draw: classifier-free guidance (1 = off)")
    evaluate.set_defaults(handler=run_eval)

    compare = sub.add_parser(
        "compare", help="paired differences, task by task, between two models' `eval --output` files (same scenes)"
    )
    compare.add_argument("first", type=Path, help="metrics JSON of model A (frontier multimodal eval --output)")
    compare.add_argument("second", type=Path, help="metrics JSON of model B, on the same split and --scenes")
    compare.set_defaults(handler=run_compare)

    ask = sub.add_parser("ask", help="answer a question about an image")
    ask.add_argument("image", type=Path)
    ask.add_argument("question")
    ask.add_argument("--model", type=Path, required=True)
    ask.set_defaults(handler=run_ask)

    caption = sub.add_parser("caption", help="describe an image")
    caption.add_argument("image", type=Path)
    caption.add_argument("--model", type=Path, required=True)
    caption.set_defaults(handler=run_caption)

    search = sub.add_parser("search", help="rank the images of a folder by how well they match a text")
    search.add_argument("text")
    search.add_argument("--images", type=Path, required=True, help="folder of images the model's size")
    search.add_argument("--model", type=Path, required=True)
    search.add_argument("--top-k", type=positive_int, default=5)
    search.set_defaults(handler=run_search)

    draw = sub.add_parser("draw", help="draw an image from a description (a model trained with the draw task)")
    draw.add_argument("text")
    draw.add_argument("--model", type=Path, required=True)
    draw.add_argument("--output", type=Path, required=True, help="PNG file (several samples side by side)")
    draw.add_argument("--samples", type=positive_int, default=1)
    draw.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples codes")
    draw.add_argument(
        "--guidance", type=float, default=1.0,
        help="classifier-free guidance: > 1 follows the text more (model trained with --draw-unconditional)",
    )  # fmt: skip
    draw.add_argument("--seed", type=int, default=0)
    draw.add_argument("--scale", type=positive_int, default=4, help="upscale the PNG this many times (default 4)")
    draw.set_defaults(handler=run_draw)


def load_trained(folder: Path):
    """(model, tokenizer) of a folder written by `frontier multimodal train`."""
    from transformers import PreTrainedTokenizerFast

    from frontier.console import hf_progress_bars_off
    from frontier.multimodal.modeling_unified import UnifiedMultimodalForConditionalGeneration

    if not (folder / "config.json").is_file() or not (folder / "tokenizer.json").is_file():
        raise ConfigError(f"{folder} is not a trained multimodal model (config.json and tokenizer.json expected); "
                          "give the final/ folder of `frontier multimodal train`")  # fmt: skip
    with hf_progress_bars_off():
        model, info = UnifiedMultimodalForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    if info["missing_keys"] or info["unexpected_keys"]:  # transformers would only warn and start those at random
        raise ConfigError(f"{folder} does not hold this frontier's multimodal weights (missing "
                          f"{sorted(info['missing_keys'])[:3]}, unexpected {sorted(info['unexpected_keys'])[:3]}); "
                          "it was saved by another version: retrain it")  # fmt: skip
    return model.eval(), PreTrainedTokenizerFast.from_pretrained(folder)


def load_scene_generator(folder: Path):
    from frontier.multimodal.catalog import default_generator, scene_config_from_dict

    path = folder / SCENE_CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{path} is missing: the scenes a model was trained on are recorded there")
    return default_generator(scene_config_from_dict(json.loads(path.read_text())))


def run_scenes(args: argparse.Namespace) -> int:
    from PIL import Image

    from frontier.multimodal.catalog import default_generator

    generator = default_generator()
    args.output.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(args.count):
        scene = generator.scene(args.split, index)
        path = args.output / f"{args.split}-{index:04d}.png"
        Image.fromarray(generator.render(scene, args.split)).save(path)
        examples = generator.examples(scene, args.split, index)
        questions = [{"question": ex.prompt.removeprefix("question : ").removesuffix(" answer :"), "answer": ex.target,
                      "type": ex.question_type} for ex in examples if ex.task == "vqa"]  # fmt: skip
        lines.append(json.dumps({"image": path.name, "caption": examples[0].target, "questions": questions}))
    atomic_write_text(args.output / "scenes.jsonl", "\n".join(lines) + "\n")
    print(f"wrote {args.count} {args.split} scenes to {args.output}", file=sys.stderr)
    return 0


def run_train(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from accelerate import PartialState

    from frontier.console import progress_steps
    from frontier.multimodal.catalog import default_generator, default_scene_config
    from frontier.multimodal.codebook import fit_codebook
    from frontier.multimodal.configuration_unified import UnifiedMultimodalConfig
    from frontier.multimodal.modeling_unified import UnifiedMultimodalForConditionalGeneration
    from frontier.multimodal.processing import build_tokenizer
    from frontier.multimodal.training import MultimodalTrainConfig, train_unified
    from frontier.research.train_cli import _check_run_file
    from frontier.research.training import TRAIN_LOG_NAME, read_step_log

    config = MultimodalTrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
        checkpoint_every=args.checkpoint_every, seed=args.seed, retrieval_weight=args.retrieval_weight,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()), draw_unconditional=args.draw_unconditional,
    )  # fmt: skip
    # A rerun resumes only the model it would build itself (the checkpoints hold weights, not the architecture, and
    # the codebook is fitted afresh from these settings); the training settings are checked with the checkpoint.
    drawing = "draw" in config.tasks
    architecture = {
        "image_size": args.image_size, "patch_size": args.patch_size, "hidden_size": args.hidden_size,
        "layers": args.layers, "heads": args.heads, "fusion_layer": args.fusion_layer, "backend": args.backend,
        "modality_specific_layers": args.modality_specific_layers,
        "codebook_size": args.codebook_size if drawing else None,
        "codebook_images": args.codebook_images if drawing else None,
    }  # fmt: skip
    # The first PartialState fixes the process group: on CPUs it must say so, or `accelerate launch` processes each
    # train alone (as in research/train_cli.py).
    state = PartialState(cpu=not torch.cuda.is_available())
    scene_config = default_scene_config(image_size=args.image_size, seed=args.seed)
    # The scenes too: checkpoints trained on other splits (held-out pairs, few-shot objects) must not be continued.
    scenes = json.loads(json.dumps(asdict(scene_config)))  # as the run file stores it: tuples become lists
    _check_run_file(args.output, {**architecture, "scenes": scenes}, write=state.is_main_process)
    generator = default_generator(scene_config)
    tokenizer = build_tokenizer(generator.vocabulary())
    codebook = None
    if drawing:
        with progress_steps("fitting the patch codebook (k-means)", total=1) as advance:
            images = [generator.render(generator.scene("train", i), "train") for i in range(args.codebook_images)]
            codebook = fit_codebook(np.stack(images), args.patch_size, args.codebook_size, seed=args.seed)
            advance()
    model_config = UnifiedMultimodalConfig(
        vocab_size=len(tokenizer), image_size=args.image_size, patch_size=args.patch_size,
        hidden_size=args.hidden_size, intermediate_size=2 * args.hidden_size, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, fusion_layer=args.fusion_layer, attention_backend=args.backend,
        modality_specific_layers=args.modality_specific_layers,
        image_codebook_size=codebook.size if codebook else 0,
    )  # fmt: skip
    torch.manual_seed(args.seed)
    model = UnifiedMultimodalForConditionalGeneration(model_config)
    args.output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output / SCENE_CONFIG_NAME, asdict(scene_config))
    train_unified(model, tokenizer, generator, config, args.output, codebook=codebook)
    if not state.is_main_process:  # under `accelerate launch`, one process writes and reports
        return 0
    log = read_step_log(args.output / TRAIN_LOG_NAME)
    summary = {
        "parameters": model.num_parameters(),
        "steps": len(log),
        "train_seconds": sum(r["seconds"] for r in log),
        "positions": sum(r["positions"] for r in log),
        # None when part of the run was trained before FLOPs were logged.
        "flops": sum(r["flops"] for r in log) if all("flops" in r for r in log) else None,
        # The largest of the processes that ran its steps (a resumed run has several), as each logged it after every
        # step; a rerun of a finished run trains nothing, so its own memory is not the run's.
        "peak_rss_mib": max(r["peak_rss_mib"] for r in log),
    }
    atomic_write_json(args.output / TRAIN_SUMMARY_NAME, summary)
    processes = state.num_processes
    print(f"model saved to {args.output / 'final'} ({summary['parameters']:,} parameters, {summary['steps']} steps, "
          f"peak memory {summary['peak_rss_mib']:.0f} MiB" + (f", {processes} processes" if processes > 1 else "")
          + ")", file=sys.stderr)  # fmt: skip
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from frontier.multimodal.evaluation import evaluate, format_metrics

    if args.grid and not args.draw:
        raise ConfigError("--grid shows drawings: add --draw")
    model, tokenizer = load_trained(args.model)
    generator = load_scene_generator(args.model)
    metrics = evaluate(model, tokenizer, generator, args.split, args.scenes, progress=True)
    report = f"{args.split}, {args.scenes} scenes\n{format_metrics(metrics)}"
    if args.draw:
        from frontier.multimodal.codebook import PatchCodebook
        from frontier.multimodal.drawing import evaluate_drawing, save_grid, train_judge

        codebook = PatchCodebook.load(args.model)
        judge = train_judge(generator, seed=0)
        drawing, rows = evaluate_drawing(model, tokenizer, codebook, generator, judge, args.split, args.scenes,
                                         progress=True, guidance=args.guidance)  # fmt: skip
        metrics["drawing"] = drawing
        report += "\n" + "\n".join(
            f"  drawing, judged on {name} images: objects {100 * d['object_accuracy']:.1f}%, colours "
            f"{100 * d['colour_accuracy']:.1f}%, empty cells {100 * d['empty_cell_accuracy']:.1f}%, whole scenes "
            f"{100 * d['scene_accuracy']:.1f}%"
            + (f", Fréchet distance to real {d['frechet_distance_to_real']:.2f}" if name != "real" else "")
            for name, d in ((n, drawing[n]) for n in ("real", "reconstructed", "drawn"))
        )  # fmt: skip
        if args.grid:
            save_grid(rows, args.grid)
    if args.output:
        atomic_write_json(args.output, metrics)
    print(report)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from frontier.multimodal.evaluation import COMPARED, compare, figure_text

    metrics = []
    for path in (args.first, args.second):
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError) as error:  # ValueError: not UTF-8 or not JSON
            raise ConfigError(f"cannot read {path} as `frontier multimodal eval --output` metrics ({error})") from None
        if (
            not isinstance(loaded, dict)
            or not {"split", "scenes"} <= loaded.keys()
            or not isinstance(loaded.get("items"), dict)
        ):
            raise ConfigError(f"{path}: not the metrics of this version's `frontier multimodal eval --output` "
                              "(no split, scenes and per-item outcomes)")  # fmt: skip
        metrics.append(loaded)
    first, second = metrics
    in_both = [t for t in COMPARED if COMPARED[t][0] in first["items"] and COMPARED[t][0] in second["items"]]
    if not in_both:
        raise ConfigError("the two files share no task with per-item outcomes")
    lines = []  # everything is checked before anything is printed
    for task in in_both:
        comparison = compare(first, second, task)
        try:
            figures = f"{figure_text(first, task)} vs {figure_text(second, task)}"
        except KeyError as missing:
            raise ConfigError(
                f"a metrics file lacks {missing}: write both with `frontier multimodal eval --output`"
            ) from None
        verdict = "holds" if comparison.holds else "not shown"
        lines.append(f"  {COMPARED[task][1]}: {figures}, {comparison}; A ≥ B {verdict}")
    print(f"A = {args.first}, B = {args.second}: {first['split']}, {first['scenes']} scenes; A − B with 95% intervals")
    print("\n".join(lines))
    in_either = [t for t in COMPARED if COMPARED[t][0] in first["items"] or COMPARED[t][0] in second["items"]]
    skipped = [COMPARED[t][1] for t in in_either if t not in in_both]
    if skipped:
        print(f"  not compared (scored for one model only): {', '.join(skipped)}")
    return 0


def _answer(model, tokenizer, image_path: Path, prompt: str) -> str:
    from frontier.multimodal.processing import encode_words, load_image, pixel_values

    pixels = pixel_values([load_image(image_path, model.config.image_size)], model.config.image_size)
    ids = [tokenizer.bos_token_id, *encode_words(tokenizer, prompt)]
    return tokenizer.decode(model.generate(pixels, [ids])[0])


def run_ask(args: argparse.Namespace) -> int:
    model, tokenizer = load_trained(args.model)
    question = args.question.strip().lower().rstrip("?").strip()
    print(_answer(model, tokenizer, args.image, f"question : {question} ? answer :"))
    return 0


def run_caption(args: argparse.Namespace) -> int:
    model, tokenizer = load_trained(args.model)
    print(_answer(model, tokenizer, args.image, "caption :"))
    return 0


def run_search(args: argparse.Namespace) -> int:
    import torch

    from frontier.multimodal.processing import load_image, pixel_values, text_batch

    model, tokenizer = load_trained(args.model)
    if not args.images.is_dir():
        raise ConfigError(f"--images {args.images} is not a folder")
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {args.images}")
    size = model.config.image_size
    with torch.no_grad():
        text = model.encode_text(**text_batch(tokenizer, [args.text.lower()]))
        scores = torch.cat([
            model.encode_image(pixel_values([load_image(p, size) for p in paths[i : i + 64]], size)) @ text.T
            for i in range(0, len(paths), 64)
        ])[:, 0]  # fmt: skip
    for score, index in zip(*scores.topk(min(args.top_k, len(paths))), strict=True):
        print(f"{score.item():.3f}  {paths[index]}")
    return 0


def run_draw(args: argparse.Namespace) -> int:
    import torch

    from frontier.multimodal.codebook import PatchCodebook
    from frontier.multimodal.drawing import save_grid
    from frontier.multimodal.processing import text_batch

    if args.samples > 1 and args.temperature == 0:
        raise ConfigError("greedy drawing gives one image: for --samples > 1 add --temperature (e.g. 0.8)")
    if args.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0, got {args.temperature}")
    model, tokenizer = load_trained(args.model)
    codebook = PatchCodebook.load(args.model)
    texts = text_batch(tokenizer, [args.text.lower()] * args.samples)
    generator = torch.Generator().manual_seed(args.seed)
    codes = model.draw(texts["input_ids"], texts["attention_mask"], args.temperature, generator, args.guidance)
    save_grid([list(codebook.decode(codes, model.config.image_size))], args.output, scale=args.scale)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
