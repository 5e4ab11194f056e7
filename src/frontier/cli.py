"""The `frontier` command line.

Errors caused by the user's input print as one line on stderr and exit non-zero (2 for usage, 1 otherwise);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import frontier
from frontier.errors import ConfigError, FrontierError

GENERATE_EXAMPLES = """examples:
  frontier generate "What is the capital of France?"
  frontier generate "Write a haiku about autumn" --temperature 0.8 --top-p 0.9 --seed 1
  frontier generate "Hello" --model path/to/saved_model_dir --max-new-tokens 32
  frontier generate "Tell a story" --decoding autodeco --heads path/to/heads --show-params
"""

SERVE_EXAMPLES = """examples:
  frontier serve                                   # embedded SmolLM2 at http://127.0.0.1:8000/v1
  frontier serve --heads path/to/heads --port 8080 # AutoDeco: per-token temperature and top-p
  frontier serve --model path/to/saved_model_dir --served-model-name my-model --host 0.0.0.0
  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]}'
"""

AUTODECO_MAKE_DATA_EXAMPLES = """examples:
  frontier autodeco make-data --output solutions.jsonl                  # 2000 problems × 4 samples, embedded SmolLM2
  frontier autodeco make-data --output solutions.jsonl --problems 200 --families arithmetic,counting
  frontier autodeco train --data solutions.jsonl --output heads/        # then train the heads on them
"""

AUTODECO_TRAIN_EXAMPLES = """examples:
  frontier autodeco train --data solutions.jsonl --output heads/            # embedded SmolLM2 as the base
  frontier autodeco train --data solutions.jsonl --output heads/ --steps 50 --train temperature
  frontier autodeco train --data big.jsonl --output heads/ --stream         # no feature cache: bounded memory
  accelerate launch -m frontier.cli autodeco train --data solutions.jsonl --output heads/
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


def _int_at_least(minimum: int, expected: str) -> Callable[[str], int]:
    """An argparse type: an integer ≥ minimum, else an error saying what was expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer")
whole_number = _int_at_least(0, "a whole number (0, 1, 2, …)")


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
    generate.add_argument("--max-new-tokens", type=positive_int, default=256, help="default: 256")
    generate.add_argument(
        "--temperature", type=float, default=None,
        help="0 = greedy; default 0 for static decoding, 1 for autodeco (it multiplies the predicted T)",
    )  # fmt: skip
    generate.add_argument("--top-p", type=float, default=1.0, help="nucleus mass in (0, 1] (autodeco: × predicted p)")
    generate.add_argument("--seed", type=int, default=None, help="seed for sampling")
    generate.add_argument(
        "--model",
        default=None,
        help="a local .gguf file or save_pretrained folder (default: with --heads the base they were trained on, "
        "else the embedded SmolLM2)",
    )
    generate.add_argument(
        "--decoding", choices=["static", "autodeco"], default="static",
        help="static: fixed temperature/top-p; autodeco: per-token T and p from AutoDeco heads (needs --heads)",
    )  # fmt: skip
    generate.add_argument("--heads", type=Path, default=None, help="folder written by AutoDecoForCausalLM")
    generate.add_argument(
        "--show-params", action="store_true",
        help="autodeco: colour the streamed tokens by T, then list every token's T and p (colour-coded) on stderr",
    )  # fmt: skip
    add_device_options(generate)
    generate.set_defaults(handler=run_generate)

    serve = commands.add_parser(
        "serve",
        help="serve a causal LM over an OpenAI-compatible HTTP API (AutoDeco decoding with --heads)",
        epilog=SERVE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--model", default=None,
        help="a local .gguf file or save_pretrained folder (default: with --heads their base, else the embedded model)",
    )  # fmt: skip
    serve.add_argument("--heads", type=Path, default=None, help="AutoDeco heads folder: sample at their T and p")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    serve.add_argument("--port", type=_port, default=8000, help="default: 8000")
    serve.add_argument("--served-model-name", default=None, help="the `model` clients send (default: from --model)")
    serve.add_argument("--max-tokens-limit", type=positive_int, default=2048, help="default: 2048 per choice")
    serve.add_argument(
        "--prompt-cache", type=whole_number, default=2, metavar="N",
        help="keep the KV caches of the last N single-prompt requests, so a conversation's next turn reads only its "
        "new tokens (0: off; default: 2)",
    )  # fmt: skip
    add_device_options(serve)
    serve.set_defaults(handler=run_serve)

    autodeco = commands.add_parser("autodeco", help="AutoDeco heads: train them on a frozen base")
    autodeco_commands = autodeco.add_subparsers(
        dest="autodeco_command", metavar="COMMAND", parser_class=OneLineErrorParser
    )
    make_data = autodeco_commands.add_parser(
        "make-data",
        help="rejection-sample the base on generated problems; keep its correct answers as training pairs (JSONL)",
        epilog=AUTODECO_MAKE_DATA_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    make_data.add_argument("--output", type=Path, required=True, help="JSONL file to write (resumes if interrupted)")
    make_data.add_argument("--model", default=None, help="base model (default: embedded SmolLM2)")
    make_data.add_argument("--problems", type=positive_int, default=2000, help="how many problems (default 2000)")
    make_data.add_argument("--samples", type=positive_int, default=4, help="answers sampled per problem (default 4)")
    make_data.add_argument(
        "--families", default=None, help="comma-separated, from arithmetic,counting,dates,word_problems (default all)"
    )
    make_data.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    make_data.add_argument("--top-p", type=float, default=1.0, help="sampling top-p (default 1.0)")
    make_data.add_argument("--max-new-tokens", type=positive_int, default=64)
    make_data.add_argument("--batch-size", type=positive_int, default=64, help="sequences decoded together")
    make_data.add_argument("--seed", type=int, default=0)
    add_device_options(make_data)
    make_data.set_defaults(handler=run_autodeco_make_data)

    train = autodeco_commands.add_parser(
        "train",
        help="train temperature/top-p heads on a JSONL of {prompt, completion} (base frozen; resumes from --output)",
        epilog=AUTODECO_TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--data", type=Path, required=True, help="JSONL file, one {prompt, completion} object a line")
    train.add_argument("--output", type=Path, required=True, help="folder for checkpoints and the final heads")
    train.add_argument("--model", default=None, help="base model (default: embedded SmolLM2)")
    train.add_argument("--steps", type=positive_int, default=400)
    train.add_argument("--batch-size", type=positive_int, default=8)
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-every", type=positive_int, default=100)
    train.add_argument("--no-dft-weighting", action="store_true", help="do not weight tokens by the base's probability")
    train.add_argument("--easy-token-drop", type=float, default=0.6, help="share of easy tokens dropped (default 0.6)")
    train.add_argument(
        "--train",
        choices=["both", "temperature", "top-p"],
        default="both",
        help="which heads learn; a head left out is switched off (T̂ = 1 or P̂ = 1)",
    )
    train.add_argument(
        "--stream", action="store_true",
        help="run the base on each step's batch instead of caching its hidden states first: for data whose hidden "
        "states do not fit in memory (each step then costs a base forward)",
    )  # fmt: skip
    add_device_options(train)
    train.set_defaults(handler=run_autodeco_train)

    from frontier.research.cli import add_research_commands

    add_research_commands(commands, OneLineErrorParser)

    from frontier.multimodal.cli import add_multimodal_commands

    add_multimodal_commands(commands, OneLineErrorParser)

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
    reproduce.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest interrupted run of the same mode, seed and --only list",
    )
    reproduce.set_defaults(handler=run_reproduce, mode="quick")
    return parser


def run_generate(args: argparse.Namespace) -> int:
    from transformers import TextStreamer

    from frontier.models import SamplingSettings, generate_chat, load_causal_lm

    if args.decoding == "autodeco":
        if args.heads is None:
            raise ConfigError("--decoding autodeco needs --heads PATH (a folder written by AutoDecoForCausalLM)")
        return _generate_autodeco(args)
    if args.heads is not None:
        raise ConfigError("--heads is only used with --decoding autodeco")
    temperature = 0.0 if args.temperature is None else args.temperature
    settings = SamplingSettings(
        max_new_tokens=args.max_new_tokens, temperature=temperature, top_p=args.top_p, seed=args.seed
    )
    model, tokenizer = load_causal_lm(args.model, device=args.device, dtype=torch_dtype(args.dtype))
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    generate_chat(model, tokenizer, [args.prompt], settings, streamer=streamer)
    return 0


def _generate_autodeco(args: argparse.Namespace) -> int:
    """Stream an AutoDeco answer; with --show-params each piece is coloured by its temperature (blue cold, red hot),
    and a table of every token's T and p follows on stderr."""
    import torch
    from rich.console import Console
    from rich.text import Text

    from frontier.autodeco.modeling import AutoDecoForCausalLM, base_for_heads
    from frontier.models import SamplingSettings, chat_inputs, load_causal_lm

    temperature = 1.0 if args.temperature is None else args.temperature
    SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=temperature, top_p=args.top_p)  # validates
    base, tokenizer = load_causal_lm(
        base_for_heads(args.heads, args.model), device=args.device, dtype=torch_dtype(args.dtype)
    )
    model = AutoDecoForCausalLM.from_pretrained(args.heads, base_model=base)
    inputs = chat_inputs(tokenizer, [args.prompt])
    console = Console(highlight=False)
    generated: list[int] = []
    printed = ""

    def on_token(token: torch.Tensor, t: torch.Tensor, p: torch.Tensor) -> None:
        nonlocal printed
        generated.append(int(token[0]))
        text = tokenizer.decode(generated, skip_special_tokens=True)
        piece, printed = text[len(printed) :], text
        if args.show_params:
            console.print(Text(piece, style=_heat_colour(float(t[0]) / 2)), end="")  # T in (0, 2)
        else:
            print(piece, end="", flush=True)

    out = model.generate(
        inputs["input_ids"], inputs["attention_mask"], max_new_tokens=args.max_new_tokens, temperature=temperature,
        top_p=args.top_p, seed=args.seed, eos_token_id=tokenizer.eos_token_id, return_decoding_params=True,
        on_token=on_token,
    )  # fmt: skip
    print()
    if args.show_params:
        _print_decoding_params(tokenizer, generated, out.temperatures[0].tolist(), out.top_ps[0].tolist())
        print(
            f"mean predicted T {out.temperatures.mean():.3f}, p {out.top_ps.mean():.3f} "
            f"over {out.temperatures.shape[1]} tokens",
            file=sys.stderr,
        )
    return 0


def _heat_colour(level: float) -> str:
    """0 → blue, 1 → red (clamped)."""
    level = min(max(level, 0.0), 1.0)
    return f"rgb({int(255 * level)},60,{int(255 * (1 - level))})"


def _print_decoding_params(tokenizer, tokens: list[int], temperatures: list[float], top_ps: list[float]) -> None:
    """Every generated token with the T and p it was sampled with, colour-coded as the streamed text (p: blue when
    the nucleus is narrow, red when it is the whole distribution)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table("#", "token", "T", "p", title="decoding parameters per token", title_justify="left")
    for index, (token, t, p) in enumerate(zip(tokens, temperatures, top_ps, strict=True)):
        piece = Text(repr(tokenizer.decode([token])))  # Text, not markup: a token may hold "[...]"
        table.add_row(str(index), piece, Text(f"{t:.3f}", style=_heat_colour(t / 2)), Text(f"{p:.3f}", _heat_colour(p)))
    Console(stderr=True, highlight=False).print(table)


def add_device_options(
    parser: argparse.ArgumentParser, default_device: str | None = "auto", default_dtype: str | None = "float32"
) -> None:
    """--device and --dtype for a command that loads a local model (None defaults: "not given")."""
    parser.add_argument(
        "--device", default=default_device,
        help="where a local model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda, cuda:N or mps",
    )  # fmt: skip
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], default=default_dtype,
        help="model weights' dtype (default: float32; bfloat16 halves the memory on a GPU)",
    )  # fmt: skip


def model_source(name: str | None) -> str | None:
    """A --model value as it should be recorded: an existing path made absolute (so it still names the same model
    from another directory), anything else as given; None (the embedded model) stays None."""
    if name is not None and Path(name).exists():
        return str(Path(name).resolve())
    return name


def torch_dtype(name: str):
    """--dtype's name as a torch dtype (torch is imported here, not while the parser is built)."""
    import torch

    return getattr(torch, name)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return int(text)


def run_serve(args: argparse.Namespace) -> int:
    from frontier.serving import serve

    serve(
        args.model, args.heads, host=args.host, port=args.port, served_model_name=args.served_model_name,
        max_tokens_limit=args.max_tokens_limit, prompt_cache_size=args.prompt_cache, device=args.device,
        dtype=torch_dtype(args.dtype),
    )  # fmt: skip
    return 0


def read_jsonl_pairs(path: Path) -> list[dict[str, str]]:
    """{prompt, completion} objects from a JSONL file; a bad line is reported with its number."""
    import json

    if not path.is_file():
        raise ConfigError(f"{path}: no such file; pass a JSONL file with one {{prompt, completion}} object per line")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not item.get("prompt") or not item.get("completion"):
            raise ConfigError(f"{path}:{number}: expected an object with non-empty 'prompt' and 'completion'")
        pairs.append(item)
    if not pairs:
        raise ConfigError(f"{path}: no examples in the file")
    return pairs


def run_autodeco_make_data(args: argparse.Namespace) -> int:
    from frontier.autodeco.data import make_data
    from frontier.autodeco.problems import FAMILIES, generate_problems
    from frontier.models import SamplingSettings, load_causal_lm

    SamplingSettings(temperature=args.temperature, top_p=args.top_p)  # validates before the model loads
    if args.temperature == 0:
        raise ConfigError("--temperature 0 is greedy: one answer per problem; rejection sampling needs > 0")
    families = tuple(f.strip() for f in args.families.split(",") if f.strip()) if args.families else FAMILIES
    problems = generate_problems(args.problems, seed=args.seed, families=families)
    model, tokenizer = load_causal_lm(args.model, device=args.device, dtype=torch_dtype(args.dtype))
    summary = make_data(
        model, tokenizer, problems, args.output, samples_per_problem=args.samples, temperature=args.temperature,
        top_p=args.top_p, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed,
        model_id=model_source(args.model),
    )  # fmt: skip
    accuracy = ", ".join(f"{family} {100 * value:.1f}%" for family, value in summary.accuracy_by_family.items())
    print(f"kept {summary.kept} correct answers of {summary.samples} samples ({accuracy}) → {args.output}",
          file=sys.stderr)  # fmt: skip
    return 0


def run_autodeco_train(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState

    from frontier.autodeco.loss import AutoDecoLossConfig
    from frontier.autodeco.modeling import AutoDecoForCausalLM
    from frontier.autodeco.training import (
        StreamedFeatures,
        TrainConfig,
        cache_features,
        encode_examples,
        train_heads,
    )
    from frontier.console import progress_steps
    from frontier.models import load_causal_lm
    from frontier.models.loading import resolve_device

    loss = AutoDecoLossConfig(
        train_temperature=args.train in ("both", "temperature"),
        train_top_p=args.train in ("both", "top-p"),
        dft_weighting=not args.no_dft_weighting,
        easy_token_drop=args.easy_token_drop,
    )
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
        checkpoint_every=args.checkpoint_every, loss=loss,
    )  # fmt: skip
    pairs = read_jsonl_pairs(args.data)
    target = resolve_device(args.device)
    if target.type == "cuda" and target.index is not None and "LOCAL_RANK" not in os.environ:
        torch.cuda.set_device(target)  # one accelerate process trains on the current GPU: make it --device's
    state = PartialState(cpu=target.type == "cpu")
    # Under `accelerate launch` each process trains on its own GPU; the heads train where the base lives.
    device = state.device if state.num_processes > 1 else target
    base, tokenizer = load_causal_lm(args.model, device=device, dtype=torch_dtype(args.dtype))
    torch.manual_seed(args.seed)  # the heads' initial weights
    # what `from_pretrained` loads as their base; a head left untrained is switched off, not used at random weights
    model = AutoDecoForCausalLM(base, model_source(args.model), enable_temperature_head=loss.train_temperature,
                                enable_top_p_head=loss.train_top_p)  # fmt: skip
    examples = encode_examples(tokenizer, pairs)
    if args.stream:
        features = StreamedFeatures(model, examples)
    else:
        with progress_steps("caching base features", total=1) as advance:
            features = cache_features(model, examples)
            advance()
    history = train_heads(model, features, config, args.output)
    if not state.is_main_process:  # under `accelerate launch`, one process writes and reports
        return 0
    model.save_pretrained(args.output)
    if history:
        last = history[-1]
        print("final step: " + ", ".join(f"{k} loss {v:.4f}" for k, v in last.items()), file=sys.stderr)
    processes = f" (trained by {state.num_processes} processes)" if state.num_processes > 1 else ""
    print(f"heads saved to {args.output}{processes}", file=sys.stderr)
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    from rich.table import Table

    from frontier.console import make_progress, stderr_console
    from frontier.reproduce import Mode, Verdict, load_experiments, run_experiments
    from frontier.reproduce.report import VERDICT_MARK
    from frontier.reproduce.runner import find_resumable

    registry = load_experiments()
    if args.list:
        for name in registry.names():
            spec = registry.get(name)
            print(f"{name:24s} [{spec.system}] {spec.title}")
        return 0
    only = [name.strip() for item in args.only or [] for name in item.split(",") if name.strip()]
    if args.only is not None and not only:  # `--only "$UNSET"` must not start every experiment
        raise ConfigError("--only got no experiment names; list them (frontier reproduce --list) or leave --only out")
    if args.reports_dir.exists() and not args.reports_dir.is_dir():
        raise ConfigError(f"--reports-dir {args.reports_dir} is a file; give a folder for the reports")
    specs = registry.select(only)
    names = [spec.name for spec in specs]
    if args.resume and find_resumable(args.reports_dir, Mode(args.mode), args.seed, names) is None:
        print(
            "frontier reproduce: --resume found no interrupted run of this mode, seed and experiment list; "
            "starting a new one",
            file=sys.stderr,
        )

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
    missing_subcommand = any(
        args.command == name and getattr(args, f"{name}_command") is None
        for name in ("autodeco", "research", "multimodal")
    )
    if args.command is None or missing_subcommand:
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
