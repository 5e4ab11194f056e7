"""Turning images and scene texts into model inputs: a word-level tokenizer, pixel tensors, task batches.

The texts are generated from a closed vocabulary (`SceneGenerator.vocabulary`), so a word-level Hugging Face
tokenizer covers them exactly; a word outside it is refused with the word named, rather than mapped to [UNK]
silently, because the model has never seen it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from frontier.errors import ConfigError, ShapeError
from frontier.multimodal.modeling_unified import IGNORE_INDEX, right_pad
from frontier.multimodal.scenes import Example

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")  # ids 0-3, matching the config's pad/bos/eos defaults


def build_tokenizer(words: Sequence[str]) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: the special tokens, then `words` in order; splits on whitespace."""
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *dict.fromkeys(words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]", unk_token="[UNK]"
    )


def encode_words(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Token ids of `text` (lower-cased); ConfigError naming any word the vocabulary lacks."""
    text = text.lower().replace("?", " ?").replace(":", " :")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    unknown = [w for w, i in zip(text.split(), ids, strict=True) if i == tokenizer.unk_token_id]
    if unknown:
        raise ConfigError(f"words the model does not know: {', '.join(sorted(set(unknown)))}; use words from its "
                          "training texts (the vocabulary is saved with the model in tokenizer.json)")  # fmt: skip
    return ids


def pixel_values(images: Sequence[np.ndarray], image_size: int) -> torch.Tensor:
    """uint8 [H, W, 3] images → float [B, 3, H, W] in [-1, 1]."""
    for i, image in enumerate(images):
        if image.dtype != np.uint8 or image.shape != (image_size, image_size, 3):
            raise ShapeError(
                f"image {i} is {image.dtype} {tuple(image.shape)}; expected uint8 ({image_size}, {image_size}, 3)"
            )
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return stacked / 127.5 - 1.0


def load_image(path: str | Path, image_size: int) -> np.ndarray:
    """An image file as uint8 [size, size, 3]; a clear error for a missing, corrupt or wrongly sized file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no image file at {path}")
    try:
        with Image.open(path) as image:  # reads the header only: the size is known before any pixel is decoded
            if image.size != (image_size, image_size):
                raise ConfigError(
                    f"{path} is {image.size[0]}×{image.size[1]}; the model reads {image_size}×{image_size} images"
                )
            image.load()
            if image.mode not in ("RGB", "RGBA", "L", "P"):
                raise ConfigError(f"{path}: image mode {image.mode} is not supported; save it as RGB PNG")
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"{path} is not a readable image ({exc}); give a PNG or JPEG file") from exc
    return np.asarray(rgb, dtype=np.uint8)


def generation_batch(tokenizer: PreTrainedTokenizerFast, rows: Sequence[Sequence[Example]]) -> dict[str, torch.Tensor]:
    """Teacher-forced texts about one image per row: each example of a row is a segment [BOS] prompt target [EOS]
    (segment_ids 0, 1, …), rows right-padded, labels only on targets and EOS."""
    ids, labels, segments = [], [], []
    for examples in rows:
        row_ids, row_labels, row_segments = [], [], []
        for segment, ex in enumerate(examples):
            prompt = [tokenizer.bos_token_id, *encode_words(tokenizer, ex.prompt)]
            target = [*encode_words(tokenizer, ex.target), tokenizer.eos_token_id]
            row_ids += prompt + target
            row_labels += [IGNORE_INDEX] * len(prompt) + target
            row_segments += [segment] * (len(prompt) + len(target))
        ids.append(row_ids)
        labels.append(row_labels)
        segments.append(row_segments)
    input_ids, attention_mask = right_pad(ids, tokenizer.pad_token_id)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": right_pad(labels, IGNORE_INDEX)[0],
        "segment_ids": right_pad(segments, 0)[0],
    }


def text_batch(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Right-padded token ids of plain texts (retrieval queries, drawing descriptions); an empty text is an error."""
    for i, text in enumerate(texts):
        if not text.split():
            raise ConfigError(f"text {i} is empty; give some words the model knows (e.g. 'a red sneaker')")
    input_ids, attention_mask = right_pad([encode_words(tokenizer, t) for t in texts], tokenizer.pad_token_id)
    return {"input_ids": input_ids, "attention_mask": attention_mask}
