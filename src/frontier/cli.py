"""The `frontier` command line.

Errors caused by the user's input print as one line on stderr and exit non-zero (2 for usage, 1 otherwise);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import frontier
from frontier.errors import ConfigError, FrontierError

GENERATE_EXAMPLES = """examples:
  frontier generate "What is the capital of France?"
  frontier generate "Write a haiku about autumn" --temperature 0.8 --top-p 0.9 --seed 1
  frontier generate "Hello" --model path/to/saved_model_dir --max-new-tokens 32
"""

REPRODUCE_EXAMPLES = """examples:
  frontier reproduce                       # every experiment, quick mode (minutes on a laptop)
  frontier reproduce --full                # full measurements (slow on a CPU)
  frontier reproduce --only embedded-model # one experiment
  frontier reproduce --list                # what is registered
  frontier reproduce --resume              # finish an interrupted run
"""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse prints usage plus an error; we print one line that names the problem and where to look."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonempty_text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the prompt is empty; pass the text to answer")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="frontier", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"frontier {frontier.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)

    generate = commands.add_parser(
        "generate",
        help="answer a prompt with a causal LM (default: the embedded SmolLM2-135M-Instruct), streaming tokens",
        epilog=GENERATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate.add_argument("prompt", type=_nonempty_text, help="the user message; the chat template is applied")
    generate.add_argument("--max-new-tokens", type=_positive_int, default=256, help="default: 256")
    generate.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    generate.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1]; default 1")
    generate.add_argument("--seed", type=int, default=None, help="seed for sampling")
    generate.add_argument(
        "--model",
        default=None,
        help="a local .gguf file or save_pretrained folder (default: embedded SmolLM2)",
    )
    generate.set_defaults(handler=run_generate)

    reproduce = commands.add_parser(
        "reproduce",
        help="measure the papers' claims and write reports/<timestamp>/ (report.md, index.html, results.json)",
        epilog=REPRODUCE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = reproduce.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick", help="small subsets (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full", help="full measurements")
    reproduce.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this experiment (repeatable or comma-separated)",
    )
    reproduce.add_argument("--list", action="store_true", help="list registered experiments and exit")
    reproduce.add_argument("--seed", type=int, default=0)
    reproduce.add_argument("--reports-dir", type=Path, default=Path("reports"), help="default: ./reports")
    reproduce.add_argument("--resume", action="store_true", help="continue the newest interrupted run")
    reproduce.set_defaults(handler=run_reproduce, mode="quick")
    return parser


def run_generate(args: argparse.Namespace) -> int:
    from transformers import TextStreamer

    from frontier.models import SamplingSettings, generate_chat, load_causal_lm

    settings = SamplingSettings(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
    )
    model, tokenizer = load_causal_lm(args.model)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    generate_chat(model, tokenizer, [args.prompt], settings, streamer=streamer)
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    from rich.table import Table

    from frontier.console import make_progress, stderr_console
    from frontier.reproduce import Mode, Verdict, load_experiments, run_experiments
    from frontier.reproduce.report import VERDICT_MARK

    registry = load_experiments()
    if args.list:
        for name in registry.names():
            spec = registry.get(name)
            print(f"{name:24s} [{spec.system}] {spec.title}")
        return 0
    only = [name.strip() for item in args.only or [] for name in item.split(",") if name.strip()]
    specs = registry.select(only)

    try:
        with make_progress() as progress:
            task = progress.add_task(f"reproduce ({args.mode})", total=len(specs))
            outcome = run_experiments(
                specs,
                Mode(args.mode),
                args.reports_dir,
                seed=args.seed,
                resume=args.resume,
                on_result=lambda result: progress.advance(task),
            )
    except KeyboardInterrupt:
        print(
            "frontier reproduce: interrupted; finished experiments are kept, rerun with --resume",
            file=sys.stderr,
        )
        return 130

    table = Table(title=f"frontier reproduce --{args.mode}")
    for column in ("experiment", "claim", "measured", "verdict"):
        table.add_column(column, overflow="fold")
    for result in outcome.results:
        for row in result.rows:
            table.add_row(result.name, row.claim, row.measured, VERDICT_MARK[row.verdict])
    stderr_console.print(table)
    stderr_console.print(f"report: {outcome.report_dir / 'report.md'}  (html: {outcome.report_dir / 'index.html'})")
    if outcome.errors:
        names = ", ".join(r.name for r in outcome.errors)
        print(f"frontier reproduce: error: experiment(s) crashed: {names}; see the report", file=sys.stderr)
        return 1
    counts = sum(row.verdict is Verdict.FAIL for r in outcome.results for row in r.rows)
    if counts:
        stderr_console.print(f"{counts} claim(s) did not hold; the report says which and by how much.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except FrontierError as exc:
        print(f"frontier {args.command}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        print(f"frontier {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
