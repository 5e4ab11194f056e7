"""`frontier research index | ask | eval`: the research agent from the command line."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from frontier.cli import add_device_options, positive_int, torch_dtype
from frontier.errors import ConfigError, FrontierError

INDEX_EXAMPLES = """examples:
  frontier research index ~/notes ~/papers --output ~/notes-index
  frontier research index ~/notes --output ~/notes-index --rerank   # also store MiniLM embeddings
  (run it again after editing files: only changed documents are re-indexed)
"""

ASK_EXAMPLES = """examples:
  frontier research ask "Which country borders both Lesotho and Eswatini?"      # embedded Factbook + SmolLM2
  frontier research ask "..." --corpus ~/notes-index
  frontier research ask "..." --llm openai:Tongyi-DeepResearch-30B-A3B@http://127.0.0.1:6001/v1
  frontier research ask "..." --web-search http://localhost:8888 --web-visit     # SearXNG + live pages
  frontier research ask "..." --json > run.json                                   # the trajectory record
"""

EVAL_EXAMPLES = """examples:
  frontier research eval --limit 20 --rollouts 1                 # the shipped Factbook multi-hop set
  frontier research eval --set my.jsonl --modes agent --llm openai:model@http://127.0.0.1:8000/v1 --concurrency 8
  (interrupted? run the same command again: answered questions are skipped)
"""


RESEARCH_EXAMPLES = """examples:
  frontier research ask "Which country borders both Lesotho and Eswatini?"
  frontier research synthesize --count 500 --output synth.jsonl     # obfuscated questions (RL, evaluation)
  frontier research eval --set synth.jsonl --split test --limit 20  # their held-out split
  python -m frontier.research.evalset --count 250 --seed 1 --exclude EVAL.jsonl --output train.jsonl
  frontier research trajectories --questions train.jsonl --output sft.jsonl --midtraining mid.jsonl --top-k 3
  frontier research train --stage midtrain --data mid.jsonl --output runs/mid
  frontier research train --stage sft --data sft.jsonl --base runs/mid/final --output runs/sft
  frontier research rl --questions train.jsonl --base runs/sft/final --output runs/rl
  frontier research eval --llm local:runs/rl/final --extractor lines --top-k 3   # as the trajectories were made
  (hop-path trajectories need questions that name their entities: template questions, not synthesized ones)
"""

TRAIN_EXAMPLES = """examples:
  frontier research train --stage sft --data sft.jsonl --output runs/sft          # LoRA on the embedded SmolLM2
  frontier research train --stage midtrain --data mid.jsonl --output runs/mid --full --steps 500
  frontier research train --stage sft --data sft.jsonl --base runs/mid/final --output runs/mid-sft
  accelerate launch --num_processes 2 -m frontier research train --stage sft --data sft.jsonl --output runs/sft
  (two GPUs, DDP; for two CPU processes use `accelerate launch --multi_gpu --num_processes 2` with no GPU visible)
  frontier research ask "..." --llm local:runs/sft/final                          # use the result
  (interrupted? run the same command again: it resumes from the newest checkpoint)
"""


def add_research_commands(commands, parser_class) -> None:
    research = commands.add_parser(
        "research", help="the research agent: index documents, ask, evaluate, make data and train",
        epilog=RESEARCH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = research.add_subparsers(dest="research_command", metavar="COMMAND", parser_class=parser_class)

    index = sub.add_parser(
        "index", help="index .md/.txt/.rst/.html/.pdf/.json files for search (incremental, crash-safe)",
        epilog=INDEX_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    index.add_argument("paths", nargs="+", type=Path, help="files or folders to index")
    index.add_argument("--output", type=Path, required=True, help="index folder (created, or updated in place)")
    index.add_argument("--rerank", action="store_true", help="also embed passages for dense re-ranking (MiniLM)")
    index.set_defaults(handler=run_index)

    ask = sub.add_parser(
        "ask", help="answer a question with the ReAct agent, showing each step live",
        epilog=ASK_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    ask.add_argument("question", help="the question")
    _add_agent_options(ask)
    ask.add_argument("--json", action="store_true", help="print the trajectory record as JSON instead of the report")
    ask.add_argument(
        "--trajectory", type=Path, default=None,
        help="append the run's record to this JSONL file (default: <frontier cache>/research/trajectories.jsonl)",
    )  # fmt: skip
    ask.add_argument("--seed", type=int, default=None)
    ask.set_defaults(handler=run_ask)

    evaluate = sub.add_parser(
        "eval", help="closed-book vs single-shot RAG vs the agent on a question set (resumable)",
        epilog=EVAL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    evaluate.add_argument(
        "--set", type=Path, default=None,
        help="questions (JSONL): the shipped set's format or `frontier research synthesize` output (default: shipped)",
    )  # fmt: skip
    evaluate.add_argument(
        "--split", choices=("train", "test"), default=None, help="a synthesized set's split only (held out: test)"
    )
    evaluate.add_argument("--modes", default="closed-book,rag,agent", help="comma-separated (default: all three)")
    evaluate.add_argument("--rollouts", type=positive_int, default=3, help="answers per question (default 3)")
    evaluate.add_argument("--concurrency", type=positive_int, default=1, help="questions in flight (endpoints)")
    evaluate.add_argument("--limit", type=positive_int, default=None, help="only the first N questions")
    evaluate.add_argument("--output", type=Path, default=Path("research-eval"), help="results folder")
    evaluate.add_argument("--rag-k", type=positive_int, default=5, help="passages for single-shot RAG (default 5)")
    evaluate.add_argument("--judge", default=None, help="openai:MODEL@URL: also grade with an LLM judge")
    evaluate.add_argument("--seed", type=int, default=0)
    _add_agent_options(evaluate)
    evaluate.set_defaults(handler=run_eval)

    synthesize = sub.add_parser("synthesize", help=SYNTHESIZE_HELP)
    add_synthesize_options(synthesize)
    synthesize.set_defaults(handler=run_synthesize)
    paths = sub.add_parser("trajectories", help=TRAJECTORIES_HELP)
    add_trajectories_options(paths)
    paths.set_defaults(handler=run_trajectories)
    sample = sub.add_parser("sample", help=SAMPLE_HELP, epilog=SAMPLE_EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sample.add_argument("--questions", type=Path, required=True, help="question JSONL (evaluation or synthesized)")
    sample.add_argument("--split", default=None, help=SPLIT_HELP)
    sample.add_argument(
        "--output", type=Path, required=True,
        help="correct runs (JSONL); wrong ones go beside it to <stem>.rejected.jsonl; a rerun resumes",
    )  # fmt: skip
    sample.add_argument("--rollouts", type=positive_int, default=4, help="runs per question (default 4)")
    sample.add_argument("--limit", type=positive_int, default=None, help="only the first N questions")
    sample.add_argument("--seed", type=int, default=0, help="run r of a question uses seed + 1000·r (default 0)")
    sample.add_argument("--date", default=datetime.date.today().isoformat(), help="date in the system prompt")
    _add_agent_options(sample)
    sample.set_defaults(handler=run_sample)
    train = sub.add_parser(
        "train", help=TRAIN_HELP, epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_train_options(train)
    train.set_defaults(handler=run_train)
    loss = sub.add_parser("loss", help=LOSS_HELP)
    add_loss_options(loss)
    loss.set_defaults(handler=run_loss)
    rl = sub.add_parser("rl", help=RL_HELP, epilog=RL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_rl_options(rl)
    rl.set_defaults(handler=run_rl)


SYNTHESIZE_HELP = "synthesize obfuscated multi-hop Factbook questions (WebSailor-style) as JSONL"
TRAJECTORIES_HELP = "render verified hop-path trajectories (and FAS mid-training text) for a question set"
SPLIT_HELP = "only records whose 'split' is this (train, for a synthesized set; required when records have one)"
SAMPLE_HELP = "rejection-sample the agent's own trajectories: several runs per question, the correct ones kept for SFT"
SAMPLE_EXAMPLES = """examples:
  frontier research sample --questions synthesized.jsonl --split train --output agent.jsonl --rollouts 8 \\
      --llm openai:model@http://127.0.0.1:8000/v1          # a served model; wrong runs -> agent.rejected.jsonl
  frontier research train --stage sft --data agent.jsonl --output runs/sft   # then train on the kept runs
"""
TRAIN_HELP = "fine-tune on trajectories (sft) or mid-training text (midtrain): LoRA or full, resumable"
LOSS_HELP = "mean loss per learned token of a model on trajectories or text (e.g. held-out, before and after SFT)"
GRADIENT_CHECKPOINTING_HELP = "recompute activations in the backward pass: ~1/3 slower, far less memory"
RL_HELP = "on-policy RL of the agent on a question set: group rollouts, binary reward, leave-one-out advantage"
RL_EXAMPLES = """examples:
  frontier research rl --questions train.jsonl --base runs/sft/final --output runs/rl --steps 20
  frontier research rl --questions synthesized.jsonl --split train --output runs/rl --group-size 8 --full
  (each step logs reward, solved groups and terminations to OUTPUT/rl_log.jsonl; rerun to resume)
"""


def add_synthesize_options(parser: argparse.ArgumentParser) -> None:
    """The options of `frontier research synthesize` (and of `python -m frontier.research.synthesis`)."""
    parser.add_argument("--count", type=int, default=500, help="number of questions (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="sampling and split seed (default 0)")
    parser.add_argument("--output", type=Path, required=True, help="JSONL file to write")
    parser.add_argument("--hops", default="2,3,4", help="comma-separated walk lengths among 2,3,4 (default all)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="answers held out for test (default 0.2)")
    parser.add_argument("--no-filters", action="store_true", help="skip the closed-book and retrieval filters")
    parser.add_argument("--llm", default=None, help="closed-book filter model: local | local:PATH | openai:MODEL@URL")
    parser.add_argument("--retrieval-k", type=int, default=5, help="passages for the retrieval filter (default 5)")


def add_trajectories_options(parser: argparse.ArgumentParser) -> None:
    """The options of `frontier research trajectories` (and of `python -m frontier.research.trajectories`)."""
    parser.add_argument("--questions", type=Path, required=True, help="question JSONL (an evaluation set)")
    parser.add_argument("--output", type=Path, required=True, help="trajectory JSONL to write")
    parser.add_argument("--split", default=None, help=SPLIT_HELP)
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--midtraining", type=Path, default=None, help="also write FAS planning/reasoning text here")
    parser.add_argument("--date", default=datetime.date.today().isoformat(), help="date in the system prompt")
    parser.add_argument("--no-python", action="store_true", help="leave PythonInterpreter out of the system prompt")
    parser.add_argument(
        "--top-k", type=int, default=10,
        help="search results per query (default 10, the agent's; 3 keeps most trajectories inside an 8K window)",
    )  # fmt: skip


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """The options of `frontier research train` (and of `python -m frontier.research.train_cli`)."""
    parser.add_argument(
        "--stage", choices=["sft", "midtrain"], required=True,
        help="sft: learn the assistant turns of 'messages' records (an agent run's last 'context'); midtrain: every "
        "token of 'text' records",
    )  # fmt: skip
    parser.add_argument("--data", type=Path, required=True, help="JSONL from `frontier research trajectories`")
    parser.add_argument(
        "--base", default=None,
        help="model to train: a .gguf, a save_pretrained folder or a previous run's final folder (default: embedded)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, required=True, help="checkpoints and final/ (a rerun resumes)")
    parser.add_argument("--steps", type=positive_int, default=200, help="optimizer steps (default 200)")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="sequences per forward pass (default 1)")
    parser.add_argument("--grad-accum", type=positive_int, default=8, help="forward passes per step (default 8)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-4 LoRA, 1e-5 --full)")
    parser.add_argument("--full", action="store_true", help="train every weight (default: a LoRA adapter)")
    parser.add_argument("--lora-rank", type=positive_int, default=16, help="LoRA rank (default 16; alpha is 2x)")
    parser.add_argument(
        "--max-length", type=positive_int, default=None,
        help="tokens per example (default: the base's window, 8192 for SmolLM2); longer trajectories are dropped",
    )  # fmt: skip
    parser.add_argument("--truncate", action="store_true", help="cut long trajectories to --max-length instead")
    parser.add_argument("--gradient-checkpointing", action="store_true", help=GRADIENT_CHECKPOINTING_HELP)
    parser.add_argument("--checkpoint-every", type=positive_int, default=50, help="steps between checkpoints (50)")
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear warmup steps (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="batch order and LoRA initialisation (default 0)")


def add_rl_options(parser: argparse.ArgumentParser) -> None:
    """The options of `frontier research rl` (and of `python -m frontier.research.rl_cli`)."""
    parser.add_argument("--questions", type=Path, required=True, help="question JSONL, as `synthesize` writes")
    parser.add_argument("--split", default=None, help=SPLIT_HELP)
    parser.add_argument("--base", default=None, help="model to train, as for `train` (default: the embedded SmolLM2)")
    parser.add_argument("--output", type=Path, required=True, help="checkpoints, rl_log.jsonl and final/ (resumes)")
    parser.add_argument("--steps", type=positive_int, default=20, help="policy updates (default 20)")
    parser.add_argument("--group-size", type=positive_int, default=4, help="rollouts per question (default 4)")
    parser.add_argument("--questions-per-step", type=positive_int, default=2, help="questions per update (default 2)")
    parser.add_argument("--temperature", type=float, default=1.0, help="rollout sampling temperature (default 1)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-5 LoRA, 1e-6 --full)")
    parser.add_argument("--full", action="store_true", help="train every weight (default: a LoRA adapter)")
    parser.add_argument("--lora-rank", type=positive_int, default=16, help="LoRA rank (default 16; alpha is 2x)")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="rollouts per forward pass (default 1)")
    parser.add_argument("--max-length", type=positive_int, default=8192, help="longer rollouts are not learned")
    parser.add_argument("--gradient-checkpointing", action="store_true", help=GRADIENT_CHECKPOINTING_HELP)
    parser.add_argument("--corpus", type=Path, default=None, help="an index folder (default: the Factbook)")
    parser.add_argument("--top-k", type=positive_int, default=3, help="search results per query (default 3)")
    parser.add_argument("--no-python", action="store_true", help="do not offer the PythonInterpreter tool")
    parser.add_argument("--max-llm-calls", type=positive_int, default=8, help="calls per rollout (default 8)")
    parser.add_argument("--max-tokens-per-turn", type=positive_int, default=512, help="default 512")
    parser.add_argument("--date", default=None, help="date in the system prompt (default today)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=5, help="steps between checkpoints (5)")
    parser.add_argument("--seed", type=int, default=0, help="question order and rollout seeds (default 0)")


def run_rl(args) -> int:
    from frontier.research.rl_cli import run

    return run(args)


def add_loss_options(parser: argparse.ArgumentParser) -> None:
    """The options of `frontier research loss`."""
    parser.add_argument("--data", type=Path, required=True, help="JSONL as for `train` (e.g. held-out trajectories)")
    parser.add_argument("--stage", choices=["sft", "midtrain"], default="sft", help="how to read it (default sft)")
    parser.add_argument("--model", default=None, help="a .gguf, a folder or a `train` result (default: embedded)")
    parser.add_argument("--max-length", type=positive_int, default=None, help="longer records are left out")


def run_loss(args) -> int:
    from frontier.research.train_cli import run_loss

    return run_loss(args)


def run_train(args) -> int:
    from frontier.research.train_cli import run

    return run(args)


def module_main(prog: str, description: str, add_options, run, argv: list[str] | None) -> int:
    """`python -m frontier.research.<module>`: the options of its `frontier research` command, one-line errors."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_options(parser)
    try:
        return run(parser.parse_args(argv))
    except FrontierError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ConfigError) else 1


def run_synthesize(args) -> int:
    from frontier.research.synthesis import run

    return run(args)


def run_trajectories(args) -> int:
    from frontier.research.trajectories import run

    return run(args)


def run_sample(args) -> int:
    from frontier.research.trajectories import run_sampling

    return run_sampling(args)


def _add_agent_options(parser) -> None:
    parser.add_argument("--corpus", type=Path, default=None, help="an index folder (default: the Factbook)")
    parser.add_argument("--llm", default="local", help="local | local:PATH | openai:MODEL@BASE_URL (default local)")
    parser.add_argument("--heads", default=None, help="AutoDeco heads folder for a local model")
    add_device_options(parser, default_device=None, default_dtype=None)  # None: auto / float32 for a local model
    parser.add_argument(
        "--extractor", choices=["llm", "lines"], default="llm",
        help="visit's extractor: the reference's LLM extraction (default) or goal-word line matching",
    )  # fmt: skip
    parser.add_argument("--extractor-llm", default=None, help="a different model for visit's extraction")
    parser.add_argument(
        "--page-tokens", type=positive_int, default=None,
        help="page budget for the extractor (default 95000; 3000 for a local model)",
    )  # fmt: skip
    parser.add_argument("--web-search", default=None, metavar="URL", help="search a SearXNG instance instead")
    parser.add_argument("--web-visit", action="store_true", help="let visit fetch http(s) pages")
    parser.add_argument("--allow-private-urls", action="store_true", help="let visit fetch loopback/private addresses")
    parser.add_argument("--no-python", action="store_true", help="do not offer the PythonInterpreter tool")
    parser.add_argument("--top-k", type=positive_int, default=10, help="search results per query (default 10)")
    parser.add_argument("--max-llm-calls", type=positive_int, default=None, help="default 100 (local: 8)")
    parser.add_argument("--max-tokens-per-turn", type=positive_int, default=None, help="default 10000 (local: 512)")
    parser.add_argument("--max-context-tokens", type=positive_int, default=None, help="default 112640")
    parser.add_argument("--max-seconds", type=float, default=None, help="wall time per question (default 9000)")
    parser.add_argument("--summarize-at", type=float, default=None, help="ReSum at this fraction of the context cap")
    parser.add_argument("--temperature", type=float, default=None, help="default 0.6 (the reference's)")
    parser.add_argument("--top-p", type=float, default=None, help="default 0.95")


def build_agent_from_args(args, *, progress: bool = True):
    """The agent (and its search backend, for RAG) that the options describe."""
    from frontier.research.agent import AgentBudget, ResearchAgent
    from frontier.research.backends import ToolSettings, build_tools
    from frontier.research.llm import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, LocalLLM, load_llm, parse_llm_spec
    from frontier.research.tools import GoalLinesExtractor, LLMExtractor

    def placement(spec: str) -> dict:
        """--device / --dtype for the models the agent runs locally (default: a CUDA GPU when there is one)."""
        if parse_llm_spec(spec).kind != "local":
            return {}
        return {"device": args.device or "auto", "dtype": torch_dtype(args.dtype or "float32")}

    specs = [args.llm] + ([args.extractor_llm] if args.extractor == "llm" and args.extractor_llm else [])
    if (args.device or args.dtype) and not any(placement(spec) for spec in specs):
        raise ConfigError("--device and --dtype apply to a local model; every model here is an endpoint")
    index = None
    if args.web_search is None or args.corpus is not None:  # a bad --corpus fails before the model loads
        index = open_corpus(args.corpus, progress=progress)

    llm = load_llm(args.llm, heads=args.heads, progress=progress, **placement(args.llm))
    local = isinstance(llm, LocalLLM)
    if args.extractor == "lines":
        extractor = GoalLinesExtractor()
    else:
        extractor_llm = (
            llm
            if args.extractor_llm is None
            else load_llm(args.extractor_llm, progress=progress, **placement(args.extractor_llm))
        )
        default_page = 3000 if isinstance(extractor_llm, LocalLLM) else 95_000
        extractor = LLMExtractor(extractor_llm, page_tokens=args.page_tokens or default_page)
    settings = ToolSettings(
        top_k=args.top_k, searxng_url=args.web_search, web_visit=args.web_visit,
        allow_private_urls=args.allow_private_urls, python=not args.no_python,
    )  # fmt: skip
    tools = build_tools(index, extractor, settings)
    # A 135M model with an 8K window needs shorter turns and fewer calls than the reference's 30B with 128K.
    budget = AgentBudget(
        max_llm_calls=args.max_llm_calls or (8 if local else 100),
        max_tokens_per_turn=args.max_tokens_per_turn or (512 if local else 10_000),
        max_context_tokens=args.max_context_tokens or 110 * 1024,
        max_seconds=args.max_seconds or 150 * 60,
        summarize_at=args.summarize_at,
    )  # fmt: skip
    agent = ResearchAgent(
        llm, tools, budget, temperature=DEFAULT_TEMPERATURE if args.temperature is None else args.temperature,
        top_p=DEFAULT_TOP_P if args.top_p is None else args.top_p,
    )  # fmt: skip
    return agent, tools[0].backend  # build_tools puts search first


def stage_reporter(bar):
    """The index's `(stage, done, total)` callback drawn as one rich progress bar per stage."""
    tasks = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return report


def open_corpus(path: Path | None, progress: bool = True):
    from frontier.console import make_progress
    from frontier.research.index import CorpusIndex, factbook_index

    if path is not None:
        return CorpusIndex.open(path)
    if not progress:
        return factbook_index()
    with make_progress(transient=True) as bar:
        return factbook_index(progress=stage_reporter(bar))


def run_index(args) -> int:
    from frontier.console import make_progress, stderr_console
    from frontier.research.index import build_index

    with make_progress() as bar:
        stats = build_index(args.paths, args.output, rerank=args.rerank, progress=stage_reporter(bar))
    stderr_console.print(
        f"{args.output}: {stats.documents} documents, {stats.passages} passages "
        f"(+{stats.added} new or changed, −{stats.removed} removed, {stats.unchanged} unchanged, "
        f"{stats.duplicates} duplicate passages dropped, {stats.skipped} files skipped) in {stats.seconds:.1f} s"
    )
    for failure in stats.failures:
        stderr_console.print(f"  skipped: {failure}")
    return 0


def _show_step(console, step) -> None:
    from rich.markup import escape

    if step.kind == "summary":
        console.print(f"[magenta]summary[/] {escape(_clip(step.content, 400))}")
    elif step.kind == "tool":
        style = "red" if step.error else "green"
        console.print(f"[{style}]  ↳ {escape(_clip(step.content, 300))}[/]")
    else:
        if step.think:
            console.print(f"[dim]think: {escape(_clip(step.think, 400))}[/]")
        if step.tool is not None:
            detail = step.code if step.code is not None else json.dumps(step.arguments, ensure_ascii=False)
            console.print(f"[cyan]{step.tool}[/] {escape(_clip(detail, 300))}")
        elif "<answer>" not in step.content:
            console.print(f"[yellow]model wrote:[/] {escape(_clip(step.content, 300))}")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_ask(args) -> int:
    from frontier.console import stderr_console
    from frontier.research.report import render_report

    if not args.question.strip():
        raise ConfigError("the question is empty; pass the text to research")
    agent, _ = build_agent_from_args(args)
    trajectory = agent.run(args.question, seed=args.seed, on_step=lambda step: _show_step(stderr_console, step))
    from frontier.models.loading import cache_root
    from frontier.research.evaluation import append_record

    # Every run is kept: the records are what the training pipeline learns from.
    record_path = args.trajectory or cache_root() / "research" / "trajectories.jsonl"
    append_record(record_path, trajectory.to_json())
    stderr_console.print(f"[dim]trajectory appended to {record_path}[/]")
    if args.json:
        print(json.dumps(trajectory.to_json(), ensure_ascii=False, indent=2))
    else:
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(render_report(trajectory)))
    return 0 if trajectory.termination != "llm error" else 1


# `research eval` arguments that do not change an answer (which questions, how many at once, where results go; the
# judge scores answers afterwards), and the budget flags, recorded by their resolved values instead.
ANSWER_NEUTRAL_ARGS = {
    "command", "research_command", "handler", "set", "split", "limit", "modes", "rollouts", "concurrency", "output",
    "device", "judge", "max_llm_calls", "max_tokens_per_turn", "max_context_tokens", "max_seconds", "summarize_at",
}  # fmt: skip


def _answer_settings(args, agent) -> dict:
    """What an answer depends on, as JSON values: the model, tools and sampling arguments, and the agent's budget
    as resolved (so `--max-llm-calls 100` and the default 100 are the same run)."""
    from dataclasses import asdict

    settings = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in sorted(vars(args).items())
        if key not in ANSWER_NEUTRAL_ARGS
    }
    return {**settings, "budget": asdict(agent.budget), "context_cap": agent.context_cap}


def run_eval(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from frontier.console import make_progress
    from frontier.research.evalset import DEFAULT_EVAL_SET
    from frontier.research.evaluation import (
        MODES,
        Judge,
        agent_runner,
        closed_book_runner,
        evaluate,
        rag_runner,
    )
    from frontier.research.llm import load_llm
    from frontier.research.synthesis import read_any_questions

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"--modes {args.modes!r}: choose from {', '.join(MODES)}")
    questions = read_any_questions(args.set or DEFAULT_EVAL_SET, args.split)
    if args.limit is not None:
        questions = questions[: args.limit]
    agent, backend = build_agent_from_args(args)
    runners = {}
    answer_tokens = agent.budget.max_tokens_per_turn  # the one-call modes get one agent turn's worth
    for mode in modes:
        if mode == "closed-book":
            runners[mode] = closed_book_runner(agent.llm, max_tokens=answer_tokens)
        elif mode == "rag":
            runners[mode] = rag_runner(agent.llm, backend, k=args.rag_k, max_tokens=answer_tokens)
        else:
            runners[mode] = agent_runner(agent)
    judge = Judge(load_llm(args.judge)) if args.judge else None
    with make_progress() as bar:
        task = bar.add_task("answering", total=len(questions) * len(modes) * args.rollouts)
        summaries = evaluate(
            questions, runners, args.output, rollouts=args.rollouts, concurrency=args.concurrency, seed=args.seed,
            judge=judge, on_done=lambda mode, record: bar.advance(task), settings=_answer_settings(args, agent),
        )  # fmt: skip
    table = Table(title=f"{len(questions)} questions × {args.rollouts} rollouts — {agent.llm.name}")
    for column in ("mode", "avg@k EM", "95% CI", "best@1", "pass@k", "F1", "judge", "calls", "tools", "tokens", "s"):
        table.add_column(column)
    for s in summaries.values():
        judge_text = "—" if s.judge_accuracy is None else f"{100 * s.judge_accuracy:.1f}"
        if s.judge_errors:
            judge_text += f" ({s.judge_errors} unread)"
        table.add_row(
            s.mode, f"{100 * s.accuracy:.1f}", f"{100 * s.accuracy_low:.1f}–{100 * s.accuracy_high:.1f}",
            f"{100 * s.best_at_1:.1f}", f"{100 * s.pass_at_k:.1f}", f"{100 * s.f1:.1f}", judge_text,
            f"{s.llm_calls:.1f}", f"{s.tool_calls:.1f}", f"{s.tokens:.0f}", f"{s.seconds:.1f}",
        )  # fmt: skip
    # Piped output is not wrapped to 80 columns: the table stays one row per mode for logs and scripts.
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    summary_path = args.output / "summary.json"
    from dataclasses import asdict

    from frontier.io import atomic_write_json

    atomic_write_json(summary_path, {mode: asdict(s) for mode, s in summaries.items()})
    print(f"results in {args.output}/ (summary.json, <mode>/rollout<i>.jsonl)", file=sys.stderr)
    return 0
