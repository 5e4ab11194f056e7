"""AutoDeco on the embedded SmolLM2-135M-Instruct: Pass@1 on BIG-bench against greedy, default, expert-tuned and
MeanShift static decoding; held-out NLL; the loss ablation; decoding overhead; natural-language control.

All three experiments share one set of heads, trained as the paper does: the frozen base's own correct answers to
generated problems (rejection sampling), cached features, AutoDeco's loss. The data and heads are cached per mode and
seed under the frontier cache, so the experiments can run alone or together without training twice.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import zlib
from dataclasses import dataclass

import torch

from frontier.reproduce.plots import bar_chart
from frontier.reproduce.registry import ClaimRow, ExperimentResult, RunContext, Verdict, experiment

SOURCE = "arXiv 2510.26697; ../shared/anchors/autodeco.md"
# BIG-bench tasks where SmolLM2-135M-Instruct is clearly above zero greedy (measured: 1-digit multiplication ~78%,
# 2-digit addition ~22%, 2-digit subtraction ~23%, object counting ~14% with "Answer with just the number.").
EVAL_TASKS = ("arithmetic/1_digit_multiplication", "arithmetic/2_digit_addition",
              "arithmetic/2_digit_subtraction", "object_counting")  # fmt: skip


@dataclass(frozen=True)
class Scale:
    train_problems: int
    train_samples: int
    steps: int
    batch_size: int
    eval_per_task: int
    eval_samples: int
    temperature_grid: tuple[float, ...]
    top_p_grid: tuple[float, ...]
    overhead_tokens: int
    overhead_repeats: int
    control_prompts: int
    control_steps: int
    ablation_per_task: int
    ablation_steps: int
    timed_training_steps: int
    # Dates are left out: SmolLM2-135M solved none of 48 sampled date problems, so they only cost time (and no
    # evaluation task asks for a date).
    families: tuple[str, ...] = ("arithmetic", "counting", "word_problems")


QUICK = Scale(train_problems=48, train_samples=4, steps=40, batch_size=8, eval_per_task=6, eval_samples=3,
              temperature_grid=(0.3, 1.0), top_p_grid=(0.9,), overhead_tokens=24, overhead_repeats=3,
              control_prompts=100, control_steps=40, ablation_per_task=3, ablation_steps=20,
              timed_training_steps=10)  # fmt: skip
# Sized to fit one working session on 2 CPU cores: Pass@1 (make-data, head training, 11 decoding strategies over
# 400 problems × 8 samples) took 78 min on 2026-12-08. The expert grid is the costly part (each setting decodes every
# sample again), so it steps T by 0.2 (at T = 1 the 135M base mostly rambles); 8 samples per problem keep the 400
# problems that set the intervals' width. A head step on the cache takes about 2.6 s at batch 32 (the soft top-p
# sorts every row's 49K-token distribution), so each of the five loss variants trains 100 steps, not 400 (23 min).
FULL = Scale(train_problems=1500, train_samples=4, steps=400, batch_size=32, eval_per_task=100, eval_samples=8,
             temperature_grid=(0.2, 0.4, 0.6, 0.8, 1.0), top_p_grid=(0.8, 0.9, 0.95), overhead_tokens=256,
             overhead_repeats=5, control_prompts=200, control_steps=200, ablation_per_task=25, ablation_steps=100,
             timed_training_steps=20)  # fmt: skip
LEARNING_RATE = 1e-3
MAKE_DATA_TEMPERATURE = 1.0
ANSWER_TOKENS = 24  # make-data: long enough for the base's usual "To add 3 and 4, … = 7." answers
# Bumped when make-data or training changes what they produce, so cached heads of the old rules are not reused:
# 2 = samples cut off at the token limit are dropped (2026-12-07).
DATA_RULES = 2
EVAL_TOKENS = 16  # evaluation: the answers asked for are one number; the long tail only costs time


def _scale(ctx: RunContext) -> Scale:
    return QUICK if ctx.quick else FULL


def _is_held_out(prompt: str) -> bool:
    """One problem in five is held out from head training (for NLL), decided by its text so it never drifts."""
    return zlib.crc32(prompt.encode()) % 5 == 0


def trained_heads(ctx: RunContext):
    """(AutoDecoForCausalLM with trained heads, tokenizer, info): made once per mode and seed, then read from cache."""
    from frontier.autodeco.data import make_data
    from frontier.autodeco.modeling import CONFIG_NAME, AutoDecoForCausalLM
    from frontier.autodeco.problems import generate_problems
    from frontier.autodeco.training import TrainConfig, cache_features, encode_examples, train_heads
    from frontier.io import atomic_write_json
    from frontier.models import load_causal_lm
    from frontier.models.loading import cache_root

    scale = _scale(ctx)
    # Keyed by everything that shapes the data and heads, so a changed setting never reuses stale heads.
    key = json.dumps([scale.train_problems, scale.train_samples, scale.families, scale.steps, scale.batch_size,
                      LEARNING_RATE, MAKE_DATA_TEMPERATURE, ANSWER_TOKENS, DATA_RULES])  # fmt: skip
    folder = cache_root() / "autodeco-reproduce" / f"{ctx.mode.value}-seed{ctx.seed}-{zlib.crc32(key.encode()):08x}"
    base, tokenizer = load_causal_lm(progress=ctx.progress)
    data_path = folder / "solutions.jsonl"
    info_path = folder / "data_summary.json"
    if not info_path.is_file():
        problems = generate_problems(scale.train_problems, seed=ctx.seed, families=scale.families)
        started = time.perf_counter()
        summary = make_data(base, tokenizer, problems, data_path, samples_per_problem=scale.train_samples,
                            temperature=MAKE_DATA_TEMPERATURE, max_new_tokens=ANSWER_TOKENS, seed=ctx.seed,
                            progress=ctx.progress, model_id=None)  # fmt: skip
        info = {**summary.__dict__, "seconds": time.perf_counter() - started}
        atomic_write_json(info_path, info)
    info = json.loads(info_path.read_text())
    pairs = [json.loads(line) for line in data_path.read_text().splitlines()]
    train_pairs = [p for p in pairs if not _is_held_out(p["prompt"])]
    held_out = [p for p in pairs if _is_held_out(p["prompt"])]
    heads_dir = folder / "heads"
    if (heads_dir / CONFIG_NAME).is_file():
        model = AutoDecoForCausalLM.from_pretrained(heads_dir, base_model=base)
    else:
        torch.manual_seed(ctx.seed)  # the heads' initial weights
        model = AutoDecoForCausalLM(base, None)
        features = cache_features(model, encode_examples(tokenizer, train_pairs))
        config = TrainConfig(steps=scale.steps, batch_size=scale.batch_size, learning_rate=LEARNING_RATE,
                             seed=ctx.seed, checkpoint_every=50)  # fmt: skip
        train_heads(model, features, config, folder / "checkpoints", progress=ctx.progress)
        model.save_pretrained(heads_dir)
    info |= {"train_pairs": len(train_pairs), "held_out_pairs": len(held_out), "cache": str(folder)}
    return model, tokenizer, info, train_pairs, held_out


def bigbench_problems(ctx: RunContext, per_task: int):
    """`per_task` examples of each evaluation task (a seeded random subset), as numeric-answer problems. The tasks
    come from BIG-bench's own generator scripts (`frontier.data.bigbench.load_generated_task`): the published
    task files' sdist is no longer on PyPI."""
    from frontier.autodeco.problems import Problem, last_number
    from frontier.data.bigbench import load_generated_task

    problems = []
    for task in EVAL_TASKS:
        examples = load_generated_task(task, progress=ctx.progress)
        chosen = random.Random(f"{task}-{ctx.seed}").sample(examples, min(per_task, len(examples)))
        for example in chosen:
            answer = next(last_number(t) for t in example.targets if last_number(t) is not None)
            problems.append(Problem(example.input, answer, task))
    return problems


def _difference_row(claim: str, a, b, source: str, command: str, detail: str = "") -> ClaimRow:
    from frontier.autodeco.evaluation import paired_difference

    diff = paired_difference(a, b)
    verdict = Verdict.PASS if diff.ci_low is not None and diff.ci_low > 0 else Verdict.FAIL
    return ClaimRow(claim=claim, measured=f"{a.pass_at_1} vs {b.pass_at_1}; difference {diff}", verdict=verdict,
                    command=command, source=source, detail=detail)  # fmt: skip


@experiment("autodeco-pass-at-1", "AutoDeco vs greedy, default, expert-tuned and MeanShift decoding", "autodeco")
def pass_at_1(ctx: RunContext) -> ExperimentResult:
    from frontier.autodeco.evaluation import Strategy, decoding_nll, evaluate_strategies, expert_search, static_name
    from frontier.autodeco.training import cache_features, encode_examples

    command = "frontier reproduce --only autodeco-pass-at-1" + ("" if ctx.quick else " --full")
    scale = _scale(ctx)
    model, tokenizer, info, _, held_out = trained_heads(ctx)
    problems = bigbench_problems(ctx, scale.eval_per_task)
    # Checkpointed after every batch of problems: a `--resume`d run picks up where an interrupted one stopped.
    kwargs = dict(samples=scale.eval_samples, max_new_tokens=EVAL_TOKENS, seed=ctx.seed, progress=ctx.progress,
                  checkpoint_dir=ctx.out_dir / "autodeco-pass-at-1-units")  # fmt: skip
    default_name = static_name(1.0, 1.0)
    main = evaluate_strategies(
        model, tokenizer, problems,
        [Strategy("greedy", 0.0), Strategy(default_name, 1.0, 1.0), Strategy("AutoDeco", 1.0, 1.0, True)],
        **kwargs,
    )  # fmt: skip
    autodeco = main["AutoDeco"]
    mean_t, mean_p = autodeco.mean_temperature, autodeco.mean_top_p
    expert, grid = expert_search(model, tokenizer, problems, list(scale.temperature_grid), list(scale.top_p_grid),
                                 known={default_name: main[default_name]}, **kwargs)  # fmt: skip
    meanshift = evaluate_strategies(
        model, tokenizer, problems, [Strategy(f"MeanShift T={mean_t:.2f} p={mean_p:.2f}", mean_t, mean_p)], **kwargs
    )  # fmt: skip
    meanshift_result = next(iter(meanshift.values()))

    nll_strategies = [Strategy("default T=1 p=1", 1.0, 1.0), Strategy("AutoDeco", 1.0, 1.0, True),
                      Strategy("expert", expert.strategy.temperature, expert.strategy.top_p),
                      Strategy("MeanShift", mean_t, mean_p)]  # fmt: skip
    nll = decoding_nll(model, cache_features(model, encode_examples(tokenizer, held_out)), nll_strategies)

    shown = {"greedy": main["greedy"], "default T=1 p=1": main[default_name],
             f"expert {expert.strategy.name}": expert, "MeanShift": meanshift_result, "AutoDeco": autodeco}  # fmt: skip
    figure = ctx.figure_path("autodeco-pass-at-1", "strategies")
    bar_chart(figure, list(shown), [r.pass_at_1.value for r in shown.values()], "Pass@1 (%)",
              f"SmolLM2-135M on {len(EVAL_TASKS)} BIG-bench tasks ({len(problems)} problems, "
              f"{scale.eval_samples} samples each)",
              intervals=[(r.pass_at_1.ci_low, r.pass_at_1.ci_high) for r in shown.values()])  # fmt: skip

    per_task = {}
    for name, result in shown.items():
        per_task[name] = {}
        for task in EVAL_TASKS:
            values = [x for x, p in zip(result.per_problem, problems, strict=True) if p.family == task]
            per_task[name][task] = 100 * statistics.fmean(values)
    scale_note = (f"{len(problems)} problems × {scale.eval_samples} samples; heads trained on {info['train_pairs']} "
                  f"self-generated correct answers ({info['kept']} kept of {info['samples']} samples)")  # fmt: skip
    rows = [
        _difference_row("AutoDeco beats default sampling T=1, p=1 (paper Table 1: +3.5 points on average)",
                        autodeco, main[default_name], f"{SOURCE} §3.2", command, scale_note),
        _difference_row("AutoDeco beats greedy decoding (paper Table 1: +4.5 points on average)",
                        autodeco, main["greedy"], f"{SOURCE} §3.2", command, scale_note),
    ]  # fmt: skip
    gap = autodeco.pass_at_1.value - expert.pass_at_1.value
    rows.append(ClaimRow(
        claim="AutoDeco is within 1 point of the best static (T, p) tuned on the test set (paper §3.2, Fig. 3)",
        measured=f"AutoDeco {autodeco.pass_at_1} vs expert {expert.strategy.name} {expert.pass_at_1} "
                 f"(gap {gap:+.1f} points)",
        verdict=Verdict.PASS if gap >= -1 else Verdict.FAIL, command=command, source=f"{SOURCE} §3.2",
        detail="grid: T " + ", ".join(f"{t:g}" for t in scale.temperature_grid) + " at p=1, then p "
               + ", ".join(f"{p:g}" for p in scale.top_p_grid) + " at the best T",
    ))  # fmt: skip
    rows.append(_difference_row(
        "Per-token adaptation beats a static T, p fixed at AutoDeco's mean prediction (SimpleDeco's MeanShift "
        "argues it does not)", autodeco, meanshift_result, f"{SOURCE} §8", command,
        f"MeanShift uses T={mean_t:.3f}, p={mean_p:.3f}, the mean over AutoDeco's own generated tokens",
    ))  # fmt: skip
    rows.append(ClaimRow(
        claim="Held-out NLL of each decoding distribution (no paper figure: the DFT-weighted loss is not an NLL "
              "objective, so this shows what the heads trade, not a target)",
        measured=", ".join(f"{name} {row['nll']:.3f} nats/token ({100 * row['in_nucleus']:.0f}% in nucleus)"
                           for name, row in nll.items()),
        verdict=Verdict.NOT_COMPARABLE, command=command, source=f"{SOURCE} §2.1",
        detail=f"{info['held_out_pairs']} held-out self-generated answers; NLL of softmax(logits/T) at each "
               "strategy's T (the hard nucleus alone would give excluded tokens infinite NLL, so its coverage is "
               "reported beside it)",
    ))  # fmt: skip
    metrics = {
        "pass_at_1": {name: r.pass_at_1.__dict__ for name, r in shown.items()},
        "per_task_pass_at_1": per_task,
        "expert_grid": {name: r.pass_at_1.value for name, r in grid.items()},
        "autodeco_mean_temperature": mean_t,
        "autodeco_mean_top_p": mean_p,
        "held_out_nll": nll,
        "data": info,
    }
    return ExperimentResult(rows=rows, metrics=metrics, figures=[str(figure.relative_to(ctx.out_dir))],
                            config={"scale": scale.__dict__, "tasks": EVAL_TASKS, "lr": LEARNING_RATE},
                            seed=ctx.seed)  # fmt: skip


@experiment("autodeco-overhead", "AutoDeco decoding latency and memory vs plain sampling", "autodeco")
def overhead(ctx: RunContext) -> ExperimentResult:
    from frontier.autodeco.heads import head_parameter_count
    from frontier.autodeco.modeling import AutoDecoForCausalLM
    from frontier.models import chat_inputs, load_causal_lm
    from frontier.models.sampling import prefill, sample, static_params

    command = "frontier reproduce --only autodeco-overhead" + ("" if ctx.quick else " --full")
    scale = _scale(ctx)
    base, tokenizer = load_causal_lm(progress=ctx.progress)
    torch.manual_seed(ctx.seed)
    model = AutoDecoForCausalLM(base)  # latency does not depend on what the heads learned
    prompts = ["Write a short story about a lighthouse keeper.", "Explain how rain forms.",
               "List some uses of copper.", "Describe a busy market.", "What makes a good teacher?",
               "Tell me about the moon.", "How do bees communicate?", "Describe your favourite meal."]  # fmt: skip
    n = scale.overhead_tokens
    rows, metrics = [], {}
    for batch in (1, 8):
        inputs = chat_inputs(tokenizer, prompts[:batch])

        def hf_sampling(inputs=inputs):
            base.generate(**inputs, do_sample=True, temperature=0.8, top_p=0.9, top_k=None, max_new_tokens=n,
                          min_new_tokens=n, pad_token_id=tokenizer.pad_token_id)  # fmt: skip

        def loop(params, inputs=inputs):
            def run():
                sample(base, prefill(base, inputs["input_ids"], inputs["attention_mask"]), params, n, eos_token_id=[],
                       generator=torch.Generator(device=base.device).manual_seed(0))  # fmt: skip

            return run

        runs = {"HF generate, static T/p": hf_sampling, "frontier loop, static T/p": loop(static_params(0.8, 0.9)),
                "frontier loop, AutoDeco heads": loop(model.decoding_params())}  # fmt: skip
        loop(static_params(0.8, 0.9))()  # warm-up
        times = {name: [] for name in runs}
        for _ in range(scale.overhead_repeats):  # interleaved, so drift in machine load hits every variant alike
            for name, fn in runs.items():
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
        median = {name: statistics.median(t) for name, t in times.items()}
        versus_hf = median["frontier loop, AutoDeco heads"] / median["HF generate, static T/p"] - 1
        versus_loop = median["frontier loop, AutoDeco heads"] / median["frontier loop, static T/p"] - 1
        metrics[f"batch{batch}"] = {name: {"median_s": median[name], "tokens_per_s": batch * n / median[name],
                                           "times_s": times[name]} for name in runs}  # fmt: skip
        measured = (f"{100 * versus_hf:+.1f}% vs HF sampling, {100 * versus_loop:+.1f}% vs the same loop without "
                    f"heads (median of {scale.overhead_repeats}, {n} new tokens)")  # fmt: skip
        # Against both baselines: our loop samples faster than HF's (no sort of the vocabulary), which alone must not
        # pass the heads' own cost.
        rows.append(ClaimRow(
            claim=f"AutoDeco adds at most 2% generation latency at batch {batch}, against HF's sampling and against "
                  "the same loop without heads (paper Table 3: 1-2%)",
            measured=measured, verdict=Verdict.PASS if max(versus_hf, versus_loop) <= 0.02 else Verdict.FAIL,
            command=command,
            source=f"{SOURCE} §5",
            detail="a 135M model's vocabulary projection is a large share of each step, so the heads' full-vocabulary "
                   "statistics weigh more than on the paper's 7B model",
        ))  # fmt: skip
    metrics["training_step"] = training_step_cost(base, tokenizer, scale, ctx.seed)
    rows.append(_training_step_row(metrics["training_step"], base, scale, command))
    parameters = head_parameter_count(base.config.hidden_size)
    head_bytes = sum(p.numel() * p.element_size() for p in model.head_parameters())
    base_parameters = sum(p.numel() for p in base.parameters())
    rows.append(ClaimRow(
        claim="The heads are tiny: 512·H + 2306 parameters, a few MB at most (paper: +4 MB on a 7B model)",
        measured=f"{parameters:,} parameters ({100 * parameters / base_parameters:.2f}% of the base), "
                 f"{head_bytes / 2**20:.2f} MiB fp32; per step one extra [B, V] softmax "
                 f"({base.config.vocab_size * 4 / 2**10:.0f} KiB per row)",
        verdict=Verdict.PASS if parameters == 512 * base.config.hidden_size + 2306 else Verdict.FAIL,
        command=command, source=f"{SOURCE} §2",
    ))  # fmt: skip
    metrics |= {"head_parameters": parameters, "head_bytes": head_bytes, "base_parameters": base_parameters}
    figure = ctx.figure_path("autodeco-overhead", "latency")
    labels = [f"b{b} {name.split(',')[0].replace('frontier loop', 'loop')}{' +heads' if 'heads' in name else ''}"
              for b in (1, 8) for name in metrics[f"batch{b}"]]  # fmt: skip
    values = [metrics[f"batch{b}"][name]["tokens_per_s"] for b in (1, 8) for name in metrics[f"batch{b}"]]
    bar_chart(figure, labels, values, "tokens / s", f"SmolLM2-135M, {n} new tokens, 2-core CPU")
    return ExperimentResult(rows=rows, metrics=metrics, figures=[str(figure.relative_to(ctx.out_dir))],
                            config={"scale": scale.__dict__}, seed=ctx.seed)  # fmt: skip


def gold_sentence_pairs(problems) -> list[dict[str, str]]:
    """{prompt, completion} pairs that answer each problem with one fixed sentence holding its gold answer."""
    return [{"prompt": p.prompt, "completion": f"The answer is {p.answer}."} for p in problems]


def training_step_cost(base, tokenizer, scale: Scale, seed: int) -> dict[str, float]:
    """Seconds per head-training step on cached base features and on streamed ones (the base run on each step's
    batch), and the one-off cost of the cache, on fresh heads and generated problems answered by a gold sentence."""
    import tempfile

    from frontier.autodeco.modeling import AutoDecoForCausalLM
    from frontier.autodeco.problems import generate_problems
    from frontier.autodeco.training import StreamedFeatures, TrainConfig, cache_features, encode_examples, train_heads

    problems = generate_problems(4 * scale.batch_size, seed=seed + 20_000)
    pairs = gold_sentence_pairs(problems)
    steps = scale.timed_training_steps
    config = TrainConfig(steps=steps, batch_size=scale.batch_size, learning_rate=LEARNING_RATE, seed=seed,
                         checkpoint_every=steps)  # fmt: skip
    torch.manual_seed(seed)
    model = AutoDecoForCausalLM(base)
    examples = encode_examples(tokenizer, pairs)
    started = time.perf_counter()
    cached = cache_features(model, examples)
    seconds = {"cache_s": time.perf_counter() - started}
    for name, features in (("cached", cached), ("streamed", StreamedFeatures(model, examples))):
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            train_heads(model, features, config, folder, progress=False)
            seconds[f"{name}_step_s"] = (time.perf_counter() - started) / steps
    return seconds


def _training_step_row(cost: dict[str, float], base, scale: Scale, command: str) -> ClaimRow:
    ratio = cost["streamed_step_s"] / cost["cached_step_s"]
    head = base.get_output_embeddings().weight
    return ClaimRow(
        claim="Training the heads on cached base features is far cheaper per step than running the base on each "
              "batch (issue 4: 'about a thousand times cheaper per step'; no paper figure)",
        measured=f"{1000 * cost['cached_step_s']:.0f} vs {1000 * cost['streamed_step_s']:.0f} ms per step of "
                 f"{scale.batch_size} answers: {ratio:.1f}× cheaper (mean of {scale.timed_training_steps} steps); "
                 f"caching them once took {cost['cache_s']:.1f} s",
        verdict=Verdict.NOT_COMPARABLE, command=command, source=f"{SOURCE} §2",
        detail=f"a cached step still projects the answer window onto the whole vocabulary (the LM head: "
               f"{head.numel():,} weights of the base's {sum(p.numel() for p in base.parameters()):,}) and sorts "
               "every row of it for the soft top-p; a streamed step adds the base's forward over each whole prompt. "
               "So the saving grows with the base's depth and the prompts' length; the ratio says what caching buys "
               "on this base",
    )  # fmt: skip


@experiment("autodeco-control", "Natural-language control of T̂ and P̂, before and after targeted training", "autodeco")
def control(ctx: RunContext) -> ExperimentResult:
    from frontier.autodeco.control import control_effect, control_features, train_control
    from frontier.autodeco.problems import generate_problems

    command = "frontier reproduce --only autodeco-control" + ("" if ctx.quick else " --full")
    scale = _scale(ctx)
    model, tokenizer, _, train_pairs, _ = trained_heads(ctx)
    # Test prompts: fresh generated problems (another seed), each answered by a fixed sentence with its gold answer,
    # so only the appended command differs between the variants the heads read.
    test_problems = generate_problems(scale.control_prompts, seed=ctx.seed + 10_000)
    test_pairs = gold_sentence_pairs(test_problems)
    test_features = control_features(model, tokenizer, test_pairs)
    before = control_effect(model, test_features)
    history = train_control(model, control_features(model, tokenizer, train_pairs), steps=scale.control_steps,
                            seed=ctx.seed, progress=ctx.progress)  # fmt: skip
    after = control_effect(model, test_features)
    rows = []
    for name, paper in (("temperature", (99, 96)), ("top_p", (97, 85))):
        for direction, paper_value in zip(("low", "high"), paper, strict=True):
            consistency = 100 * after[f"{name}_{direction}_consistency"]
            rows.append(ClaimRow(
                claim=f"After targeted training, '{direction} diversity' moves the mean predicted "
                      f"{'T' if name == 'temperature' else 'p'} the right way on ≥ 95% of prompts "
                      f"(paper Table 4: {paper_value}%)",
                measured=f"{consistency:.0f}% of {after['prompts']} prompts (before training "
                         f"{100 * before[f'{name}_{direction}_consistency']:.0f}%); mean "
                         f"{after[f'{name}_none']:.3f} → {after[f'{name}_{direction}']:.3f}",
                verdict=Verdict.PASS if consistency >= 95 else Verdict.FAIL, command=command,
                source=f"{SOURCE} §8",
            ))  # fmt: skip
    figure = ctx.figure_path("autodeco-control", "means")
    labels = [f"{stage} {v}" for stage in ("before", "after") for v in ("low", "none", "high")]
    values = [report[f"temperature_{v}"] for report in (before, after) for v in ("low", "none", "high")]
    bar_chart(figure, labels, values, "mean predicted T", "Control phrases, before / after targeted training")
    return ExperimentResult(
        rows=rows, metrics={"before": before, "after": after, "loss_first": history[0], "loss_last": history[-1],
                            "train_pairs": len(train_pairs)},
        figures=[str(figure.relative_to(ctx.out_dir))], config={"scale": scale.__dict__}, seed=ctx.seed,
    )  # fmt: skip


ABLATIONS = {
    "full loss (both heads, DFT, 60% easy-token drop)": {},
    "no DFT weighting": {"dft_weighting": False},
    "no easy-token drop": {"easy_token_drop": 0.0},
    "temperature head only": {"train_top_p": False},
    "top-p head only": {"train_temperature": False},
}


@experiment("autodeco-loss-ablation", "AutoDeco's loss: each trick switched off in turn", "autodeco")
def loss_ablation(ctx: RunContext) -> ExperimentResult:
    from frontier.autodeco.evaluation import Strategy, decoding_nll, evaluate_strategies
    from frontier.autodeco.loss import AutoDecoLossConfig
    from frontier.autodeco.modeling import AutoDecoForCausalLM
    from frontier.autodeco.training import TrainConfig, cache_features, encode_examples, train_heads

    command = "frontier reproduce --only autodeco-loss-ablation" + ("" if ctx.quick else " --full")
    scale = _scale(ctx)
    trained, tokenizer, info, train_pairs, held_out = trained_heads(ctx)
    base = trained.base_model
    train_features = cache_features(trained, encode_examples(tokenizer, train_pairs))
    held_out_features = cache_features(trained, encode_examples(tokenizer, held_out))
    problems = bigbench_problems(ctx, scale.ablation_per_task)
    autodeco = Strategy("AutoDeco", 1.0, 1.0, autodeco=True)
    results, pass_rates = {}, {}
    for name, switches in ABLATIONS.items():
        torch.manual_seed(ctx.seed)  # every variant starts from the same heads
        config = TrainConfig(steps=scale.ablation_steps, batch_size=scale.batch_size, learning_rate=LEARNING_RATE,
                             seed=ctx.seed, checkpoint_every=scale.ablation_steps,
                             loss=AutoDecoLossConfig(**switches))  # fmt: skip
        # a head this variant does not train is switched off (T̂ = 1 or P̂ = 1), as in the paper's single-head runs
        model = AutoDecoForCausalLM(base, enable_temperature_head=config.loss.train_temperature,
                                    enable_top_p_head=config.loss.train_top_p)  # fmt: skip
        folder = ctx.out_dir / "artifacts" / "autodeco-loss-ablation" / name.split(" (")[0].replace(" ", "-")
        train_heads(model, train_features, config, folder, progress=ctx.progress)
        nll = decoding_nll(model, held_out_features, [autodeco])["AutoDeco"]
        pass_rates[name] = evaluate_strategies(model, tokenizer, problems, [autodeco], samples=scale.eval_samples,
                                               max_new_tokens=EVAL_TOKENS, seed=ctx.seed, progress=ctx.progress,
                                               checkpoint_dir=ctx.out_dir / "autodeco-loss-ablation-units",
                                               )["AutoDeco"]  # fmt: skip
        results[name] = {"pass_at_1": pass_rates[name].pass_at_1.__dict__, "nll": nll["nll"],
                         "in_nucleus": nll["in_nucleus"], "mean_temperature": pass_rates[name].mean_temperature,
                         "mean_top_p": pass_rates[name].mean_top_p}  # fmt: skip
    full_name = next(iter(ABLATIONS))
    note = (f"{len(problems)} BIG-bench problems × {scale.eval_samples} samples, {scale.ablation_steps} training steps "
            f"per variant; held-out NLL on {info['held_out_pairs']} self-generated answers")  # fmt: skip
    rows = [
        _difference_row(f"Training both heads jointly beats the {single} alone (paper Fig. 4, AIME: joint is best)",
                        pass_rates[full_name], pass_rates[single], f"{SOURCE} §3.2.1", command, note)
        for single in ("temperature head only", "top-p head only")
    ]  # fmt: skip
    for name in ("no DFT weighting", "no easy-token drop"):
        rows.append(ClaimRow(
            claim=f"Effect of one trick of the loss: {name} (the paper motivates it without an ablation figure)",
            measured=f"Pass@1 {pass_rates[name].pass_at_1} vs full loss {pass_rates[full_name].pass_at_1}; mean T "
                     f"{results[name]['mean_temperature']:.3f} vs {results[full_name]['mean_temperature']:.3f}; "
                     f"held-out NLL {results[name]['nll']:.3f} vs {results[full_name]['nll']:.3f} nats/token",
            verdict=Verdict.NOT_COMPARABLE, command=command, source=f"{SOURCE} §3", detail=note,
        ))  # fmt: skip
    figure = ctx.figure_path("autodeco-loss-ablation", "pass-at-1")
    bar_chart(figure, [n.split(" (")[0].replace(" head only", "") for n in pass_rates],
              [r.pass_at_1.value for r in pass_rates.values()], "Pass@1 (%)", "AutoDeco loss ablation",
              intervals=[(r.pass_at_1.ci_low, r.pass_at_1.ci_high) for r in pass_rates.values()])  # fmt: skip
    return ExperimentResult(rows=rows, metrics={"variants": results, "data": info},
                            figures=[str(figure.relative_to(ctx.out_dir))], config={"scale": scale.__dict__},
                            seed=ctx.seed)  # fmt: skip
