"""`frontier research rl`: on-policy RL of the research agent on a question set (see `frontier.research.rl`).

The policy starts from `--base` (the embedded SmolLM2, or a `train` result such as an SFT adapter, merged) and plays
the agent against the local index with goal-line extraction, so a rollout costs only the policy's own tokens. Each
step prints its mean reward, how many groups had a correct rollout and how the rollouts ended.

    python -m frontier.research.rl_cli --questions Q.jsonl --output DIR [--base PATH] [--split train]
"""

from __future__ import annotations

import argparse
import datetime
import sys

from frontier.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState

    from frontier.models.loading import load_causal_lm
    from frontier.research.agent import AgentBudget
    from frontier.research.backends import ToolSettings, build_tools
    from frontier.research.cli import open_corpus
    from frontier.research.rl import AgentEnvironment, RLConfig, train_rl
    from frontier.research.tools import GoalLinesExtractor
    from frontier.research.train_cli import _check_run_file, _file_digest, resolve_base
    from frontier.research.trajectories import read_training_questions

    if args.lr is not None and not args.lr > 0:
        raise ConfigError(f"--lr must be positive, got {args.lr}")
    lora = not args.full
    config = RLConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr or (1e-5 if lora else 1e-6), seed=args.seed,
        checkpoint_every=args.checkpoint_every, lora=lora, lora_rank=args.lora_rank, lora_alpha=2.0 * args.lora_rank,
        group_size=args.group_size, questions_per_step=args.questions_per_step, temperature=args.temperature,
        max_length=args.max_length, gradient_checkpointing=args.gradient_checkpointing,
    )  # fmt: skip
    questions = read_training_questions(args.questions, args.split, "a policy trained")
    base = resolve_base(args.base)
    state = PartialState(cpu=not torch.cuda.is_available())  # as in train_cli: CPU processes join one group
    main_process = state.is_main_process
    # The system prompt states the date: one date for the whole run (--date, else the date a resumed run recorded,
    # else today's), so a resume on another day does not change the prompts mid-run.
    date = args.date or _recorded_date(args.output, default=datetime.date.today().isoformat())
    # A rerun resumes only what it would have trained itself: same base, questions and environment.
    run_info = {
        "stage": "rl", "base": str(base), "questions_sha256": _file_digest(args.questions), "split": args.split,
        "corpus": None if args.corpus is None else str(args.corpus), "top_k": args.top_k, "python": not args.no_python,
        "max_llm_calls": args.max_llm_calls, "max_tokens_per_turn": args.max_tokens_per_turn, "date": date,
    }  # fmt: skip
    _check_run_file(args.output, run_info, write=main_process)
    tools = build_tools(
        open_corpus(args.corpus, progress=main_process), GoalLinesExtractor(),
        ToolSettings(top_k=args.top_k, python=not args.no_python),
    )  # fmt: skip
    budget = AgentBudget(max_llm_calls=args.max_llm_calls, max_tokens_per_turn=args.max_tokens_per_turn)
    environment = AgentEnvironment(tools, budget, date=date)
    model, tokenizer = load_causal_lm(base, progress=main_process)
    if main_process:
        print(f"rl: {len(questions)} questions, {config.questions_per_step} x {config.group_size} rollouts per step",
              file=sys.stderr)  # fmt: skip

    def report(record) -> None:
        endings = ", ".join(f"{name} {count}" for name, count in sorted(record.terminations.items()))
        print(
            f"step {record.step}: reward {record.reward:.3f}, solved {record.solved_groups}/{record.groups} groups, "
            f"learned {record.learned_rollouts} rollouts ({record.learned_tokens} tokens), {endings}, "
            f"{record.seconds:.0f} s",
            file=sys.stderr,
        )

    train_rl(
        model, tokenizer, questions, environment, config, args.output, progress=False, on_step=report,
        base_model=str(base) if lora else None,
    )  # fmt: skip
    if main_process:
        print(f"final model: {args.output / 'final'}  (use: --llm local:{args.output / 'final'})", file=sys.stderr)
    return 0


def _recorded_date(output, default: str) -> str | None:
    """The date the run being resumed in `output` recorded (None for a run from before dates were recorded), else
    `default`."""
    import json

    from frontier.research.train_cli import RUN_FILE
    from frontier.research.training import _latest_checkpoint

    path = output / RUN_FILE
    resuming = path.is_file() and _latest_checkpoint(output) is not None
    recorded = json.loads(path.read_text()) if resuming else {}
    return recorded["date"] if recorded.get("stage") == "rl" and "date" in recorded else default


def main(argv: list[str] | None = None) -> int:
    from frontier.research.cli import RL_HELP, add_rl_options, module_main

    return module_main("python -m frontier.research.rl_cli", RL_HELP, add_rl_options, run, argv)


if __name__ == "__main__":
    sys.exit(main())
