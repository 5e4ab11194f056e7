"""`frontier research train`: SFT on agent trajectories or mid-training on FAS text, LoRA (default) or full.

Reads a JSONL file (`messages` records for `--stage sft`, `text` records for `--stage midtrain`), encodes it for the
base model and trains it with `train_causal_lm`, which writes checkpoints into `--output` and the result into
`--output/final`: a LoRA adapter whose config names the base (`load_causal_lm` merges it back), or a whole model.
Rerunning the same command resumes from the newest checkpoint. Under `accelerate launch` every process trains and
only the main one reports.

    python -m frontier.research.train_cli --stage sft --data FILE --output DIR [--base PATH] [--full]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from frontier.errors import ConfigError

STAGES = ("sft", "midtrain")
DEFAULT_MAX_LENGTH = 8192  # SmolLM2's window; used when the base's config does not say
LORA_LR = 1e-4
FULL_LR = 1e-5
RUN_FILE = "train-run.json"  # what the output folder was trained on, checked when a rerun resumes


def read_training_records(path: Path, stage: str) -> list[tuple[int, Any]]:
    """`(line number, (messages, unsampled_ends))` for sft or `(line number, text)` for midtrain, one per non-empty
    line."""
    if not path.is_file():
        flag = "--output" if stage == "sft" else "--output OTHER.jsonl --midtraining"
        raise ConfigError(
            f"--data {path}: no such file; write one with `frontier research trajectories --questions Q.jsonl "
            f"{flag} {path}`"
        )
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        records.append((number, _record_payload(record, stage, f"{path}:{number}")))
    if not records:
        raise ConfigError(f"{path}: no records in the file")
    return records


def _record_payload(record: Any, stage: str, where: str) -> Any:
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if stage == "sft":
        if "messages" not in record:
            kind = "a mid-training record ('text')" if "text" in record else "a record without 'messages'"
            raise ConfigError(
                f"{where}: {kind}, but --stage sft learns from chat trajectories with a 'messages' list (as "
                "`frontier research trajectories` writes); pass --stage midtrain for 'text' records"
            )
        from frontier.research.trajectories import learned_conversation

        key = learned_conversation(record)
        messages = record[key]
        valid = isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        )  # fmt: skip
        if not valid:
            raise ConfigError(f"{where}: '{key}' must be a non-empty list of {{role, content}} string objects")
        # the turns of that context whose end-of-turn token the model did not sample
        ends = record.get("unsampled_ends", [])
        if not (isinstance(ends, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ends)):
            raise ConfigError(f"{where}: 'unsampled_ends' must be a list of message indices, got {ends!r}")
        return [{"role": m["role"], "content": m["content"]} for m in messages], tuple(ends)
    if "text" not in record:
        kind = "a chat trajectory ('messages')" if "messages" in record else "a record without 'text'"
        raise ConfigError(
            f"{where}: {kind}, but --stage midtrain learns from {{text}} records (as `frontier research "
            "trajectories --midtraining FILE` writes); pass --stage sft for trajectories"
        )
    if not isinstance(record["text"], str) or not record["text"]:
        raise ConfigError(f"{where}: 'text' must be a non-empty string")
    return record["text"]


def encode_records(tokenizer, records, stage: str, max_length: int, truncate: bool, path: Path):
    """The training examples and what happened to the others: `(examples, counts)`.

    A trajectory longer than `max_length` is dropped (its answer is at the end) unless `truncate`, which keeps its
    start when an assistant token is left in it; mid-training text is always cut to `max_length`.
    """
    from frontier.research.training import encode_text, encode_trajectory

    examples = []
    counts = {"too long": 0, "truncated": 0, "no assistant token left": 0, "longest": 0}
    for number, payload in records:
        try:
            if stage == "midtrain":
                input_ids, labels = encode_text(tokenizer, payload)
            else:
                messages, unsampled_ends = payload
                input_ids, labels = encode_trajectory(tokenizer, messages, unsampled_ends=unsampled_ends)
        except ConfigError as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
        counts["longest"] = max(counts["longest"], len(input_ids))
        if len(input_ids) > max_length:
            if stage == "sft" and not truncate:
                counts["too long"] += 1
                continue
            input_ids, labels = input_ids[:max_length], labels[:max_length]
            if not (labels[1:] != -100).any():
                counts["no assistant token left"] += 1
                continue
            counts["truncated"] += 1
        examples.append((input_ids, labels))
    return examples, counts


def _check_run_file(output: Path, run_info: dict[str, Any], write: bool) -> None:
    """Refuse to resume checkpoints trained on another base, data or encoding; before the first checkpoint, (re)record
    what this run trains on."""
    from frontier.io import atomic_write_json
    from frontier.research.training import _latest_checkpoint

    path = output / RUN_FILE
    if path.is_file() and _latest_checkpoint(output) is not None:
        saved = json.loads(path.read_text())
        changed = [key for key in run_info if saved.get(key) != run_info[key]]
        if changed:
            raise ConfigError(
                f"{output} holds checkpoints trained with a different {', '.join(changed)} ({path}); rerun with the "
                "same settings to resume, or pass a new --output"
            )
    elif write:
        atomic_write_json(path, run_info)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_base(base: str | None, flag: str = "--base") -> Path:
    """The absolute path of a model option (default: the embedded SmolLM2 GGUF), which a LoRA result records."""
    from frontier.models.loading import embedded_gguf_path

    if base is None:
        return embedded_gguf_path().resolve()
    path = Path(base).expanduser()
    if not path.exists():
        raise ConfigError(
            f"{flag} {base}: no such file or folder; pass a .gguf file, a save_pretrained folder or a previous "
            f"run's final folder, or leave {flag} out for the embedded SmolLM2"
        )
    return path.resolve()


def run(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState

    from frontier.models.loading import load_causal_lm
    from frontier.research.training import FINAL_NAME, TRAIN_LOG_NAME, TrainConfig, train_causal_lm

    if args.max_length is not None and args.max_length < 2:
        raise ConfigError(f"--max-length must be at least 2 tokens, got {args.max_length}")
    if args.warmup_steps < 0 or args.warmup_steps >= args.steps:
        raise ConfigError(f"--warmup-steps must be in [0, --steps={args.steps}), got {args.warmup_steps}")
    if args.lr is not None and not args.lr > 0:
        raise ConfigError(f"--lr must be positive, got {args.lr}")
    lora = not args.full
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr or (LORA_LR if lora else FULL_LR), seed=args.seed,
        checkpoint_every=args.checkpoint_every, warmup_steps=args.warmup_steps,
        gradient_accumulation_steps=args.grad_accum, lora=lora, lora_rank=args.lora_rank,
        lora_alpha=2.0 * args.lora_rank, gradient_checkpointing=args.gradient_checkpointing,
    )  # fmt: skip
    records = read_training_records(args.data, args.stage)
    base = resolve_base(args.base)

    # The same device choice as train_causal_lm's Accelerator: the first call fixes the shared state, and only with
    # cpu=True do CPU processes started by a launcher join one process group (gloo).
    state = PartialState(cpu=not torch.cuda.is_available())
    main_process = state.is_main_process
    model, tokenizer = load_causal_lm(base, progress=main_process)
    max_length = args.max_length or getattr(model.config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    examples, counts = encode_records(tokenizer, records, args.stage, max_length, args.truncate, args.data)
    if not examples:
        if counts["too long"]:
            raise ConfigError(
                f"all {len(records)} records of {args.data} are longer than --max-length {max_length} tokens (the "
                f"longest has {counts['longest']}); raise --max-length, or pass --truncate to train on their starts"
            )
        raise ConfigError(
            f"no record of {args.data} keeps an assistant token within --max-length {max_length}; raise --max-length"
        )
    run_info = {
        "stage": args.stage, "base": str(base), "data_sha256": _file_digest(args.data), "max_length": max_length,
        "truncate": args.truncate,
    }  # fmt: skip
    if args.stage == "sft" and any(ends for _, (_, ends) in records):
        run_info["unsampled_ends"] = "not learned"  # checkpoints from before 2026-12-07 learned them
    _check_run_file(args.output, run_info, write=main_process)
    if main_process:
        processes = f" ({state.num_processes} processes)" if state.num_processes > 1 else ""
        print(f"{args.stage}: {len(examples)} of {len(records)} records of {args.data} kept{processes}",
              file=sys.stderr)  # fmt: skip
        if counts["too long"]:
            print(
                f"  dropped {counts['too long']} longer than --max-length {max_length} tokens (longest "
                f"{counts['longest']}; raise --max-length or pass --truncate)",
                file=sys.stderr,
            )
        if counts["no assistant token left"]:
            print(f"  dropped {counts['no assistant token left']} with no assistant token left after truncation",
                  file=sys.stderr)  # fmt: skip
        if counts["truncated"]:
            print(f"  truncated {counts['truncated']} to {max_length} tokens", file=sys.stderr)
    train_causal_lm(
        model, examples, config, args.output, tokenizer=tokenizer, progress=main_process,
        base_model=str(base) if lora else None,
    )  # fmt: skip
    if main_process:
        final = args.output / FINAL_NAME
        kind = f"LoRA adapter on {base}" if lora else "full model"
        print(f"final model ({kind}): {final}", file=sys.stderr)
        print(f'  use it with: frontier research ask "..." --llm local:{final}', file=sys.stderr)
        print(f"  loss per step: {args.output / TRAIN_LOG_NAME}", file=sys.stderr)
    return 0


def run_loss(args: argparse.Namespace) -> int:
    """`frontier research loss`: the mean loss per learned token of a model on a data file (e.g. held-out
    trajectories), the quantity `train` minimises."""
    from frontier.models.loading import load_causal_lm
    from frontier.research.training import learned_tokens, mean_token_loss

    records = read_training_records(args.data, args.stage)
    model, tokenizer = load_causal_lm(resolve_base(args.model, "--model"), progress=False)
    max_length = args.max_length or getattr(model.config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    examples, counts = encode_records(tokenizer, records, args.stage, max_length, False, args.data)
    if not examples:
        raise ConfigError(f"no record of {args.data} fits --max-length {max_length} tokens; raise --max-length")
    tokens = learned_tokens(examples)
    loss = mean_token_loss(model, examples, batch_size=1)
    dropped = f", {counts['too long']} longer than {max_length} tokens left out" if counts["too long"] else ""
    print(f"{loss:.4f} nats per learned token over {len(examples)} records ({tokens} tokens{dropped})")
    return 0


def main(argv: list[str] | None = None) -> int:
    from frontier.research.cli import TRAIN_HELP, add_train_options, module_main

    return module_main("python -m frontier.research.train_cli", TRAIN_HELP, add_train_options, run, argv)


if __name__ == "__main__":
    sys.exit(main())
