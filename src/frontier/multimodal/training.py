"""Multi-task training of the unified model on generated scenes: captioning, VQA and retrieval in every step.

Each step draws `batch_size` training scenes; every scene gives its caption (generation), one of its questions
(generation) and its (image, caption) pair (retrieval, in-batch negatives). With softmax attention (`packs_texts`)
a scene is one row, [patches ; caption ; question], and its retrieval image embedding is pooled from that same
pass: the model runs over each image once for all three tasks. Otherwise each text gets its own row with the image
and retrieval encodes the images again. One forward computes every loss, so the step is one DDP step under
`accelerate launch`. `tasks` restricts training to some tasks (the single-task baselines). Checkpoints, resume, the
per-step log and the final save are the shared `TrainingRun`'s.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from frontier.console import progress_steps
from frontier.errors import ConfigError
from frontier.io import atomic_write_json
from frontier.multimodal.cli import SCENE_CONFIG_NAME
from frontier.multimodal.codebook import PatchCodebook
from frontier.multimodal.modeling_unified import UnifiedMultimodalForConditionalGeneration, right_pad
from frontier.multimodal.processing import encode_words, generation_batch, pixel_values, text_batch
from frontier.multimodal.scenes import READING_TASKS, TASKS, SceneGenerator
from frontier.research.training import TrainConfig, TrainingRun


@dataclass
class MultimodalTrainConfig(TrainConfig):
    batch_size: int = 32  # scenes per step
    lr: float = 1e-3
    warmup_steps: int = 50
    checkpoint_every: int = 500
    tasks: tuple[str, ...] = READING_TASKS
    # The contrastive loss pulls the mean-pooled states of the shared blocks towards one embedding; at weight 1 it
    # stalled the LM loss of captions and answers (1.81 after 250 steps where single-task models reached 0.6-0.8).
    retrieval_weight: float = 0.1
    train_scenes: int = 50_000  # steps draw scenes from indices [0, train_scenes)
    # Share of drawing rows whose description is replaced by the null text ([BOS] alone), so the model also learns
    # to draw unconditionally: what classifier-free guidance (`draw(guidance=…)`) contrasts the description with.
    draw_unconditional: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.tasks = tuple(self.tasks)
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ConfigError(f"tasks must be a non-empty subset of {', '.join(TASKS)}; got {', '.join(self.tasks)}")
        if self.lora:
            raise ConfigError("the multimodal model trains from scratch: LoRA does not apply")
        if not 0 <= self.draw_unconditional < 1:
            raise ConfigError(f"draw_unconditional is a share in [0, 1), got {self.draw_unconditional}")


# The few training scenes that show a few-shot name are not drawn at random: a short run draws a few thousand of the
# 50,000 scenes and would miss most of them. From the end of the warmup, every FEW_SHOT_EVERY-th step shows the next
# one, in turn, whatever the run's length: each is seen once in 300 steps, about 12 times in 3000.
FEW_SHOT_EVERY = 20


def few_shot_scene_at(generator: SceneGenerator, config: MultimodalTrainConfig, step: int) -> int | None:
    """The few-shot training scene that step `step` shows, or None."""
    since = step - config.warmup_steps
    if not generator.few_shot_train_scenes or since < 0 or since % FEW_SHOT_EVERY:
        return None
    return since // FEW_SHOT_EVERY % generator.few_shot_train_scenes


def step_batch(
    generator: SceneGenerator, tokenizer, config: MultimodalTrainConfig, step: int,
    codebook: PatchCodebook | None = None,
    shard: tuple[int, int] = (0, 1),
    pack: bool = True,
) -> dict:  # fmt: skip
    """The model inputs of training step `step`: a function of (seed, step) alone, so a resumed run repeats it.
    `pack`: one row per scene holding all its texts (the model's `config.packs_texts`), else one row per text.
    Drawing (caption → the patch codes of its image) needs the `codebook`. `shard` = (process index, processes):
    under DDP each process takes every n-th scene (retrieval negatives then come from its own share)."""
    rng = random.Random(f"{config.seed}/multimodal-step/{step}")
    indices = rng.sample(range(generator.few_shot_train_scenes, config.train_scenes), config.batch_size)
    if (few_shot := few_shot_scene_at(generator, config, step)) is not None:
        indices[0] = few_shot
    indices = indices[shard[0] :: shard[1]]
    images, texts, captions = [], [], []
    for index in indices:
        scene = generator.scene("train", index)
        examples = generator.examples(scene, "train", index)
        images.append(generator.render(scene, "train"))
        captions.append(examples[0].target)
        scene_texts = []
        if "caption" in config.tasks:
            scene_texts.append(examples[0])
        if "vqa" in config.tasks:
            scene_texts.append(rng.choice([ex for ex in examples if ex.task == "vqa"]))
        texts.append(scene_texts)
    pixels = pixel_values(images, generator.config.image_size)
    batch: dict = {}
    one_pass = pack and bool(texts[0])  # one row per scene: its image is read once, for every task
    if texts[0]:
        if one_pass:
            batch = {**generation_batch(tokenizer, texts), "pixel_values": pixels}
        else:
            batch = generation_batch(tokenizer, [[text] for scene_texts in texts for text in scene_texts])
            batch["pixel_values"] = pixels[[i for i, scene_texts in enumerate(texts) for _ in scene_texts]]
    if "retrieval" in config.tasks:
        encoded = text_batch(tokenizer, captions)
        batch.update(retrieval_input_ids=encoded["input_ids"], retrieval_attention_mask=encoded["attention_mask"])
        if not one_pass:  # else the model pools the retrieval images from the generation pass
            batch["retrieval_pixel_values"] = pixels
    if "draw" in config.tasks:
        if codebook is None:
            raise ConfigError("the draw task needs a patch codebook (fit_codebook) to turn images into codes")
        described = [
            [tokenizer.bos_token_id] if rng.random() < config.draw_unconditional else encode_words(tokenizer, caption)
            for caption in captions
        ]
        input_ids, attention_mask = right_pad(described, tokenizer.pad_token_id)
        batch.update(draw_input_ids=input_ids, draw_attention_mask=attention_mask,
                     draw_codes=codebook.encode(np.stack(images)))  # fmt: skip
    return batch


# torch counts no FLOPs for the attention kernels it picks on the CPU; they do what its other SDPA kernels do.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: (
        lambda query, key, value, *args, out_shape=None, **kwargs: sdpa_flop_count(query, key, value)
    ),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: (
        lambda grad, query, key, value, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(
            grad, query, key, value
        )
    ),
}


def batch_positions(batch: dict, num_patches: int) -> int:
    """Sequence positions a step runs through the blocks (patches plus real tokens, padding left out)."""
    positions = 0
    if "input_ids" in batch:
        positions += int(batch["attention_mask"].sum()) + num_patches * len(batch["input_ids"])
    if "retrieval_input_ids" in batch:
        positions += int(batch["retrieval_attention_mask"].sum())
    if "retrieval_pixel_values" in batch:
        positions += num_patches * len(batch["retrieval_pixel_values"])
    if "draw_input_ids" in batch:
        positions += int(batch["draw_attention_mask"].sum()) + num_patches * len(batch["draw_input_ids"])
    return positions


def shape_signature(batch: dict[str, torch.Tensor]) -> tuple:
    """What a step's FLOPs depend on: the name and shape of every input tensor (padding included, since it runs).
    On KDA layers the gates also pick one of two equivalent UT-transform paths; the first step of a shape decides."""
    return tuple(sorted((name, tuple(tensor.shape)) for name, tensor in batch.items()))


def train_unified(
    model: UnifiedMultimodalForConditionalGeneration,
    tokenizer,
    generator: SceneGenerator,
    config: MultimodalTrainConfig,
    output_dir: str | Path,
    progress: bool = True,
    codebook: PatchCodebook | None = None,
) -> UnifiedMultimodalForConditionalGeneration:
    """Train (or resume) in `output_dir`; saves `output_dir/final` with the tokenizer (and the codebook, for the
    draw task) and returns the model."""
    import resource  # POSIX only: imported here so that the module itself imports everywhere

    torch.manual_seed(config.seed)
    # A run on some of the tasks leaves other heads (the retrieval projections, the code head) without gradients.
    run = TrainingRun(model, config, output_dir, find_unused_parameters=True)
    if config.batch_size < run.accelerator.num_processes:
        raise ConfigError(f"batch_size={config.batch_size} gives some of the {run.accelerator.num_processes} "
                          "processes no scene; use at least one scene per process")  # fmt: skip
    device = run.accelerator.device
    # Counted by torch, forward and backward, on the first step of each batch shape (padded lengths vary from step to
    # step) and reused for later steps of that shape: counting every step would slow every step.
    flops_by_shape: dict[tuple, int] = {}
    with progress_steps("training the unified model", total=config.steps, enabled=progress) as advance:
        for _ in range(run.start):
            advance()
        for step in range(run.start, config.steps):
            began = time.perf_counter()
            shard = (run.accelerator.process_index, run.accelerator.num_processes)
            batch = step_batch(generator, tokenizer, config, step, codebook, shard, model.config.packs_texts)
            positions = batch_positions(batch, model.config.num_patches)
            batch = {k: v.to(device) for k, v in batch.items()}
            signature = shape_signature(batch)
            counter = None if signature in flops_by_shape else FlopCounterMode(
                display=False, custom_mapping=CPU_ATTENTION_FLOPS)  # fmt: skip
            with counter or contextlib.nullcontext():
                out = run.prepared(**batch)
                weighted = ((1.0, out.lm_loss), (config.retrieval_weight, out.retrieval_loss), (1.0, out.draw_loss))
                loss = sum(weight * part for weight, part in weighted if part is not None)
                run.accelerator.backward(loss)
            if counter is not None:
                flops_by_shape[signature] = counter.get_total_flops()
            # Every process's share of the step: the main process writes the log. (float32: MPS has no float64.)
            step_positions, step_flops = run.accelerator.reduce(
                torch.tensor([positions, flops_by_shape[signature]], dtype=torch.float32, device=device), "sum"
            ).tolist()
            grad_norm = run.accelerator.clip_grad_norm_(run.prepared.parameters(), 1.0)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
            run.log({
                "step": step + 1,
                "loss": loss.item(),
                "lm_loss": None if out.lm_loss is None else out.lm_loss.item(),
                "retrieval_loss": None if out.retrieval_loss is None else out.retrieval_loss.item(),
                "draw_loss": None if out.draw_loss is None else out.draw_loss.item(),
                "lr": run.scheduler.get_last_lr()[0],
                "positions": round(step_positions),
                "flops": round(step_flops),
                "grad_norm": float(grad_norm),
                "seconds": time.perf_counter() - began,
                # This process's peak so far: a run resumed in another process keeps the earlier peaks in its log.
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            })  # fmt: skip
            run.end_step(step + 1)
            advance()

    def extras(folder: Path) -> None:  # what `load_trained` reads beside the weights
        atomic_write_json(folder / SCENE_CONFIG_NAME, asdict(generator.config))
        if codebook is not None:
            codebook.save(folder)

    return run.finish(tokenizer=tokenizer, extras=extras)
