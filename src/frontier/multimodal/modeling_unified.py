"""The unified multimodal model: image patches and text tokens in one sequence, one transformer, four tasks.

    patches  = Conv(P×P, stride P)(image) + row/column position + image type  → image adapter  ┐
    tokens   = Embedding(ids) + position + text type                          → text adapter   ├→ [patches ; text]
    layers < fusion_layer:  attend within a modality (patches ↔ patches, text causal)          │   → N blocks
    layers ≥ fusion_layer:  text → every patch as well; patches never read text                 ┘   → RMSNorm
    LM head on text positions: captions and VQA answers, teacher-forced, loss on the target only
    retrieval: image = the patches' final states mean-pooled; text = the blocks over the text alone, mean-pooled;
               each projected and L2-normalised; symmetric InfoNCE
    drawing (if the config has a codebook): [text ; patch codes], each code predicted from the text and earlier codes

Because the patches never read text (as in a decoder that sees the image first), their states are the same whatever
text follows: one pass over an image serves every task about it. Training packs a scene's caption and its question
into one row, [patches ; caption ; question], each text a segment that attends to the patches and to itself only
(`segment_ids`), and pools the retrieval image embedding from the same patch states; the three single-task models
each need their own pass over the image. Packing needs softmax attention: a KDA layer reads the row as one causal
recurrence, so it takes one text per row.

Each block is pre-norm: attention (softmax over the layer's mask, or Kimi Delta Attention) then a SwiGLU MLP.
`generate` and `draw` decode with a `DecodingCache`: the fixed segment (the patches; the drawing's text) and the
prompt are read once, rows grouped by length so that no row holds padding, then each new token reads the cached
keys and values (softmax layers) or continues the recurrent state (KDA layers). `forward` is the reference they are
tested against.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from frontier.errors import ConfigError, ShapeError
from frontier.layers.kda import KDAState, KimiDeltaAttention
from frontier.layers.mlp import SwiGLUMLP
from frontier.layers.norm import RMSNorm
from frontier.multimodal.configuration_unified import UnifiedMultimodalConfig

IMAGE, TEXT = 0, 1  # modality-type embedding rows
IGNORE_INDEX = -100


def right_pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows → (ids [B, L] padded on the right with `value`, attention mask [B, L] with 1 on real tokens)."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)
    return ids, torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)


def hierarchical_masks(
    num_image: int, text_mask: torch.Tensor, segment_ids: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean attention masks [B, 1, S, S] (True = may attend) over [num_image patches ; L text tokens].

    within: patches ↔ patches, text → earlier text of its own segment (segment_ids [B, L]: several texts about one
    image packed in a row; default: one text). fused: within, plus text → every patch. Patches never read text.
    Keys at padded text positions are closed; every query keeps itself, so no row is empty.
    """
    B, L = text_mask.shape
    S = num_image + L
    device = text_mask.device
    if segment_ids is None:
        segment_ids = torch.zeros(B, L, dtype=torch.long, device=device)
    is_image = torch.arange(S, device=device) < num_image
    text_pos = torch.arange(S, device=device) - num_image
    valid = torch.cat([torch.ones(B, num_image, dtype=torch.bool, device=device), text_mask.bool()], dim=1)
    segment = torch.cat([torch.full((B, num_image), -1, device=device), segment_ids], dim=1)  # patches: -1
    same = segment[:, :, None] == segment[:, None, :]
    causal = text_pos[:, None] >= text_pos[None, :]
    within = same & (is_image[:, None] | causal)[None] & valid[:, None, :]
    text_to_image = (~is_image[:, None] & is_image[None, :])[None]
    fused = within | text_to_image
    eye = torch.eye(S, dtype=torch.bool, device=device)[None]
    return (within | eye)[:, None], (fused | eye)[:, None]


def segment_positions(segment_ids: torch.Tensor) -> torch.Tensor:
    """[B, L] → each token's position within its segment (segments are contiguous runs of one id)."""
    index = torch.arange(segment_ids.shape[1], device=segment_ids.device).expand_as(segment_ids)
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    return index - torch.where(starts, index, 0).cummax(dim=1).values


def drawing_masks(text_mask: torch.Tensor, num_codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks [B, 1, S, S] over [L text tokens ; num_codes patch codes]: within = text causal and codes causal;
    fused = within plus codes → every real text token. Padded text keys are closed; every query keeps itself."""
    B, L = text_mask.shape
    S = L + num_codes
    device = text_mask.device
    is_code = torch.arange(S, device=device) >= L
    causal = torch.ones(S, S, dtype=torch.bool, device=device).tril()
    same = is_code[:, None] == is_code[None, :]
    valid = torch.cat([text_mask.bool(), torch.ones(B, num_codes, dtype=torch.bool, device=device)], 1)
    within = (causal & same)[None] & valid[:, None, :]
    fused = within | ((is_code[:, None] & ~is_code[None, :])[None] & valid[:, None, :])
    eye = torch.eye(S, dtype=torch.bool, device=device)[None]
    return (within | eye)[:, None], (fused | eye)[:, None]


def description_mask(
    config: UnifiedMultimodalConfig, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """The boolean mask [B, L] of drawing descriptions, checked: the model draws, and each row is a right-padded,
    non-empty text."""
    if not config.image_codebook_size:
        raise ConfigError("this model has no image codebook (image_codebook_size=0): it was not built to draw")
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    if mask.shape != input_ids.shape:
        raise ShapeError(f"attention_mask has shape {tuple(mask.shape)}; expected input_ids' {tuple(input_ids.shape)}")
    if bool((mask[:, 1:] > mask[:, :-1]).any()):
        raise ShapeError("attention_mask must mark right-padded texts: each row 1s, then 0s")
    if not bool(mask[:, :1].all()):
        raise ShapeError("a description has no tokens: every row needs at least one (drawing starts from its text)")
    return mask


class ModalityAdapter(nn.Module):
    """x + MLP(RMSNorm(x)): a modality's own residual map into the shared width."""

    def __init__(self, hidden_size: int, intermediate_size: int, eps: float) -> None:
        super().__init__()
        self.norm = RMSNorm(hidden_size, eps)
        self.mlp = SwiGLUMLP(hidden_size, intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class MaskedSelfAttention(nn.Module):
    """Multi-head softmax attention under an explicit boolean mask (no positional rotation: positions are added)."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv_proj = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.o_proj(attend(*split_heads(self.qkv_proj(x), self.num_heads), mask))


def split_heads(qkv: torch.Tensor, num_heads: int) -> list[torch.Tensor]:
    """[B, T, 3·D] projected queries, keys and values → q, k, v, each [B, heads, T, D / heads]."""
    return [t.unflatten(-1, (num_heads, -1)).transpose(1, 2) for t in qkv.chunk(3, dim=-1)]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Heads [B, heads, T|S, d] → [B, T, D] attention output under the boolean `mask` [B|1, 1, T, S]."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).flatten(2)


class BlockWeights(nn.Module):
    """The weights of one pre-norm block: attention (softmax or KDA) and a SwiGLU MLP, each after an RMSNorm."""

    def __init__(self, config: UnifiedMultimodalConfig, softmax: bool) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        if softmax:
            self.attn = MaskedSelfAttention(config.hidden_size, config.num_attention_heads)
        else:
            head_dim = config.hidden_size // config.num_attention_heads
            self.attn = KimiDeltaAttention(config.hidden_size, config.num_attention_heads, head_dim)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLUMLP(config.hidden_size, config.intermediate_size)


@dataclass
class LayerCache:
    """One layer's decoding state: keys and values [B, heads, S, d] of every position so far (softmax), or the
    recurrent state of the growing segment (KDA; in a fused layer, of the whole row)."""

    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None
    state: KDAState | None = None


@dataclass
class DecodingCache:
    """What each new token of the growing segment (the text after an image, the codes after a description) reads.

    first / valid [B, S]: whether cached position s belongs to the fixed first segment, and whether it is a token
    (rows are read in groups of equal length, so padding sits only at the end of a shorter row's cached part).
    positions [B]: the growing segment's next position in each row."""

    layers: list[LayerCache]
    first: torch.Tensor
    valid: torch.Tensor
    positions: torch.Tensor

    @classmethod
    def merge(cls, parts: list[tuple[list[int], DecodingCache]], order: torch.Tensor) -> DecodingCache:
        """Caches of row groups (row indices, cache) → one cache of all rows, shorter rows padded at the end; `order`
        takes the groups' rows, concatenated, back to row order."""
        width = max(part.first.shape[1] for _, part in parts)
        sample = parts[0][1]

        def stack(tensors: list[torch.Tensor], seq_dim: int | None = None) -> torch.Tensor:
            if seq_dim is not None:  # pad the sequence dimension to `width`
                tensors = [F.pad(t, [0, 0] * (t.dim() - 1 - seq_dim) + [0, width - t.shape[seq_dim]]) for t in tensors]
            return torch.cat(tensors)[order]

        layers = []
        for i, layer in enumerate(sample.layers):
            caches = [part.layers[i] for _, part in parts]
            merged = LayerCache()
            if layer.keys is not None:
                merged.keys = stack([c.keys for c in caches], seq_dim=2)
                merged.values = stack([c.values for c in caches], seq_dim=2)
            if layer.state is not None:
                merged.state = KDAState(stack([c.state.conv for c in caches]),
                                        stack([c.state.recurrent for c in caches]))  # fmt: skip
            layers.append(merged)
        return cls(layers, stack([p.first for _, p in parts], 1), stack([p.valid for _, p in parts], 1),
                   stack([p.positions for _, p in parts]))  # fmt: skip

    def open_keys(self, fused: bool) -> torch.Tensor:
        """[B, 1, 1, S] keys a new growing-segment token may read: its own segment, plus the first if fused."""
        return (self.valid & (~self.first | fused))[:, None, None, :]


class UnifiedBlock(nn.Module):
    """One layer. Shared weights for both modalities, or (the first `modality_specific_layers` layers) one set per
    modality — a two-tower encoder when every layer is so and only the last is fused (the late-fusion baseline)."""

    def __init__(self, config: UnifiedMultimodalConfig, index: int) -> None:
        super().__init__()
        self.fused = index >= config.fusion_layer
        self.softmax = config.layer_uses_softmax(index)
        separate = index < config.modality_specific_layers
        # branches[0] serves every token (shared) or the patches; branches[1], if any, the text.
        self.branches = nn.ModuleList(BlockWeights(config, self.softmax) for _ in range(2 if separate else 1))

    def modality_spans(self, image: slice, length: int) -> list[tuple[BlockWeights, slice]]:
        """The non-empty segments in sequence order, with the branch that serves each. The image segment `image`
        comes first (reading: [patches ; text]) or last (drawing: [text ; patch codes]); the text is the rest."""
        text_branch = self.branches[-1]
        if image.start == 0:
            spans = [(self.branches[0], image), (text_branch, slice(image.stop, length))]
        else:
            spans = [(text_branch, slice(0, image.start)), (self.branches[0], image)]
        return [(branch, span) for branch, span in spans if span.stop > span.start]

    def per_modality(self, x: torch.Tensor, image: slice, apply) -> torch.Tensor:
        """apply(branch, segment): on the whole sequence with shared weights, else per modality with its own."""
        if len(self.branches) == 1:
            return apply(self.branches[0], x)
        return torch.cat([apply(branch, x[:, span]) for branch, span in self.modality_spans(image, x.shape[1])], 1)

    def forward(
        self, x: torch.Tensor, masks: tuple[torch.Tensor, torch.Tensor], image: slice, valid: torch.Tensor,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """With `cache` (decoding; the growing segment is the one after `image`'s, or the image if it comes last),
        also keep what later tokens of the growing segment read: keys and values, or the recurrent state."""
        h = self.per_modality(x, image, lambda branch, seg: branch.attn_norm(seg))
        if self.softmax:
            qkv = self.per_modality(h, image, lambda branch, seg: branch.attn.qkv_proj(seg))
            q, k, v = split_heads(qkv, self.branches[0].attn.num_heads)
            if cache is not None:
                cache.keys, cache.values = k, v
            out = attend(q, k, v, masks[1] if self.fused else masks[0])
            mixed = self.per_modality(out, image, lambda branch, seg: branch.attn.o_proj(seg))
        elif self.fused:  # one causal pass over the whole sequence: the later modality reads the earlier one
            if cache is not None:
                cache.state = KDAState()
            mixed = self.branches[0].attn(h, None if cache is None else cache.state, padding_mask=valid)
        else:  # a separate recurrent state per modality segment
            spans = self.modality_spans(image, x.shape[1])
            if cache is not None:
                cache.state = KDAState()
            growing = spans[-1][1]
            mixed = torch.cat([
                branch.attn(h[:, span], cache.state if cache is not None and span == growing else None,
                            padding_mask=valid[:, span])
                for branch, span in spans
            ], 1)  # fmt: skip
        x = x + mixed
        return x + self.per_modality(x, image, lambda branch, seg: branch.mlp(branch.mlp_norm(seg)))

    def step(self, x: torch.Tensor, cache: LayerCache, open_keys: torch.Tensor, image_grows: bool) -> torch.Tensor:
        """One new token of the growing segment, x [B, 1, D] → [B, 1, D]; `cache` extended by it. open_keys
        [B, 1, 1, S + 1] are the keys it may read, itself included."""
        branch = self.branches[0] if image_grows else self.branches[-1]
        h = branch.attn_norm(x)
        if self.softmax:
            q, k, v = split_heads(branch.attn.qkv_proj(h), branch.attn.num_heads)
            cache.keys, cache.values = torch.cat([cache.keys, k], 2), torch.cat([cache.values, v], 2)
            mixed = branch.attn.o_proj(attend(q, cache.keys, cache.values, open_keys))
        else:
            mixed = branch.attn(h, cache.state)
        x = x + mixed
        return x + branch.mlp(branch.mlp_norm(x))


class UnifiedMultimodalPreTrainedModel(PreTrainedModel):
    config_class = UnifiedMultimodalConfig
    base_model_prefix = "model"
    _no_split_modules: ClassVar[list[str]] = ["UnifiedBlock"]

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, KimiDeltaAttention):
            module.reset_gate_parameters()
        elif isinstance(module, UnifiedMultimodalModel):
            nn.init.normal_(module.image_row_position, std=std)
            nn.init.normal_(module.image_col_position, std=std)


class UnifiedMultimodalModel(UnifiedMultimodalPreTrainedModel):
    """Embeddings, adapters and the block stack; the final hidden states of [patches ; text] (`forward`) or of
    [text ; patch codes] (`forward_draw`)."""

    def __init__(self, config: UnifiedMultimodalConfig) -> None:
        super().__init__(config)
        D, n = config.hidden_size, config.patches_per_side
        self.patch_embed = nn.Conv2d(config.num_channels, D, config.patch_size, stride=config.patch_size)
        self.image_row_position = nn.Parameter(torch.zeros(n, 1, D))
        self.image_col_position = nn.Parameter(torch.zeros(1, n, D))
        self.token_embed = nn.Embedding(config.vocab_size, D, padding_idx=config.pad_token_id)
        self.text_position = nn.Embedding(config.max_text_positions, D)
        self.modality_embed = nn.Embedding(2, D)
        self.image_adapter = ModalityAdapter(D, config.intermediate_size, config.rms_norm_eps)
        # Drawing: one embedding per codebook entry, plus the start code (index K) that opens an image.
        size = config.image_codebook_size
        self.code_embed = nn.Embedding(size + 1, D) if size else None
        self.text_adapter = ModalityAdapter(D, config.intermediate_size, config.rms_norm_eps)
        self.layers = nn.ModuleList(UnifiedBlock(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(D, config.rms_norm_eps)
        self.post_init()

    def embed_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, C, H, W] (normalised floats) → [B, num_patches, D]."""
        c = self.config
        expected = (c.num_channels, c.image_size, c.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ShapeError(
                f"pixel_values has shape {tuple(pixel_values.shape)}; expected [B, {', '.join(map(str, expected))}]"
            )
        x = self.patch_embed(pixel_values.to(self.patch_embed.weight.dtype))  # [B, D, n, n]
        x = x.permute(0, 2, 3, 1) + self.image_row_position + self.image_col_position
        x = x.flatten(1, 2) + self.modality_embed.weight[IMAGE]
        return self.image_adapter(x)

    def embed_text(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids [B, L] → [B, L, D]; positions [B, L] (default 0..L-1) index the learned text positions."""
        if input_ids.dim() != 2:
            raise ShapeError(f"input_ids has shape {tuple(input_ids.shape)}; expected [B, L]")
        if positions is None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        longest = int(positions.max()) + 1 if positions.numel() else 0
        if longest > self.config.max_text_positions:
            raise ShapeError(f"a text in input_ids has {longest} tokens; the model reads at most "
                             f"max_text_positions={self.config.max_text_positions}")  # fmt: skip
        x = self.token_embed(input_ids) + self.text_position(positions) + self.modality_embed.weight[TEXT]
        return self.text_adapter(x)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int]:
        """Hidden states [B, P + L, D] and P, the number of patch positions (0 without an image).

        attention_mask [B, L]: 1 for tokens, 0 for right padding. segment_ids [B, L]: contiguous runs of one id, one
        per text packed in the row (default: one text); each segment reads itself and the patches, and its
        positions restart at 0, so a packed text gets the states it would get alone in a row."""
        if pixel_values is None and input_ids is None:
            raise ShapeError("give pixel_values, input_ids or both")
        positions = None
        if segment_ids is not None:
            if input_ids is None or segment_ids.shape != input_ids.shape:
                raise ShapeError(f"segment_ids has shape {tuple(segment_ids.shape)}; expected input_ids' shape "
                                 f"{None if input_ids is None else tuple(input_ids.shape)}")  # fmt: skip
            if not self.config.packs_texts and bool((segment_ids != segment_ids[:, :1]).any()):
                raise ConfigError("several texts packed in one row (segment_ids) need softmax attention in "
                                  "every layer; a KDA layer reads the row as one recurrence: give one text per "
                                  "row")  # fmt: skip
            positions = segment_positions(segment_ids)
        parts = []
        if pixel_values is not None:
            parts.append(self.embed_image(pixel_values))
        if input_ids is not None:
            parts.append(self.embed_text(input_ids, positions))
        x = torch.cat(parts, dim=1)
        B, num_image = x.shape[0], parts[0].shape[1] if pixel_values is not None else 0
        L = x.shape[1] - num_image
        text_mask = torch.ones(B, L, dtype=torch.bool, device=x.device) if attention_mask is None else attention_mask
        if text_mask.shape != (B, L):
            raise ShapeError(f"attention_mask has shape {tuple(text_mask.shape)}; expected {(B, L)}")
        masks = hierarchical_masks(num_image, text_mask, segment_ids)
        valid = torch.cat([torch.ones(B, num_image, dtype=torch.bool, device=x.device), text_mask.bool()], 1)
        return self.run_layers(x, masks, slice(0, num_image), valid), num_image

    def run_layers(
        self, x: torch.Tensor, masks, image: slice, valid: torch.Tensor, caches: list[LayerCache] | None = None
    ) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, masks, image, valid, None if caches is None else caches[i])
        return self.norm(x)

    def decode_step(self, x: torch.Tensor, cache: DecodingCache, image_grows: bool) -> torch.Tensor:
        """Final hidden state [B, 1, D] of one new growing-segment token x [B, 1, D] (embedded); extends `cache`."""
        cache.first = F.pad(cache.first, (0, 1), value=False)
        cache.valid = F.pad(cache.valid, (0, 1), value=True)
        for layer, layer_cache in zip(self.layers, cache.layers, strict=True):
            x = layer.step(x, layer_cache, cache.open_keys(layer.fused), image_grows)
        cache.positions = cache.positions + 1
        return self.norm(x)

    def prefill_groups(
        self, lengths: list[int], read: Callable[[list[int], list[LayerCache]], tuple[torch.Tensor, int]]
    ) -> tuple[DecodingCache, torch.Tensor]:
        """Read rows grouped by length (no padding inside a group); returns the merged cache and each row's last
        final hidden state [B, D]. read(rows, caches) runs the layers on those rows and returns (hidden [b, S, D],
        the length of the first segment)."""
        groups: dict[int, list[int]] = defaultdict(list)
        for row, length in enumerate(lengths):
            groups[length].append(row)
        parts, last = [], []
        for rows in groups.values():
            caches = [LayerCache() for _ in self.layers]
            hidden, num_first = read(rows, caches)
            b, S = hidden.shape[:2]
            first = (torch.arange(S, device=hidden.device) < num_first).expand(b, S)
            valid = torch.ones(b, S, dtype=torch.bool, device=hidden.device)
            positions = torch.full((b,), S - num_first, dtype=torch.long, device=hidden.device)
            parts.append((rows, DecodingCache(caches, first, valid, positions)))
            last.append(hidden[:, -1])
        order = torch.tensor([row for rows, _ in parts for row in rows], device=last[0].device).argsort()
        return DecodingCache.merge(parts, order), torch.cat(last)[order]

    def embed_codes(self, code_inputs: torch.Tensor, first_position: int = 0) -> torch.Tensor:
        """Patch-code inputs [B, n] (the codes so far, after a start code; or the n from `first_position` on) →
        [B, n, D]. Input j carries the position of the patch it predicts, so the model knows which cell comes next."""
        n = code_inputs.shape[1]
        positions = (self.image_row_position + self.image_col_position).flatten(0, 1)[first_position:][:n]
        x = self.code_embed(code_inputs) + positions + self.modality_embed.weight[IMAGE]
        return self.image_adapter(x)

    def forward_draw(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, code_inputs: torch.Tensor
    ) -> torch.Tensor:
        """Hidden states of [text ; patch-code inputs]: text causal, codes causal, codes read the text from the
        fusion layer on (the drawing layout: the image comes after its description).

        attention_mask [B, L] marks a right-padded text; the text is moved to the right end of its columns first, so
        the padding comes before it, where a KDA layer's recurrence passes over it unchanged (between text and codes
        the pads would decay the state). The text keeps its positions 0..n-1."""
        text_mask = description_mask(self.config, input_ids, attention_mask)
        L = input_ids.shape[1]
        moved = (torch.arange(L, device=input_ids.device) - (L - text_mask.sum(1, keepdim=True))) % L
        input_ids, text_mask = input_ids.gather(1, moved), text_mask.gather(1, moved)
        positions = (text_mask.cumsum(1) - 1).clamp(min=0)
        x = torch.cat([self.embed_text(input_ids, positions), self.embed_codes(code_inputs)], dim=1)
        masks = drawing_masks(text_mask, code_inputs.shape[1])
        valid = torch.cat([text_mask, torch.ones_like(code_inputs, dtype=torch.bool)], 1)
        return self.run_layers(x, masks, slice(input_ids.shape[1], x.shape[1]), valid)


@dataclass
class UnifiedMultimodalOutput(ModelOutput):
    # The unweighted sum of the task losses computed; `train_unified` weighs them instead (retrieval_weight, 0.1 by
    # default), so train on the parts when reproducing its objective.
    loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    retrieval_loss: torch.Tensor | None = None
    draw_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # [B, L, V] at the text positions


class UnifiedMultimodalForConditionalGeneration(UnifiedMultimodalPreTrainedModel):
    """LM head for captions and answers, projections for contrastive retrieval."""

    _tied_weights_keys: ClassVar[dict[str, str]] = {"lm_head.weight": "model.token_embed.weight"}

    def __init__(self, config: UnifiedMultimodalConfig) -> None:
        super().__init__(config)
        self.model = UnifiedMultimodalModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.image_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature
        size = config.image_codebook_size
        self.code_head = nn.Linear(config.hidden_size, size, bias=False) if size else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.token_embed

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        retrieval_pixel_values: torch.Tensor | None = None,
        retrieval_input_ids: torch.Tensor | None = None,
        retrieval_attention_mask: torch.Tensor | None = None,
        draw_input_ids: torch.Tensor | None = None,
        draw_attention_mask: torch.Tensor | None = None,
        draw_codes: torch.Tensor | None = None,
    ) -> UnifiedMultimodalOutput:
        """Generation part: [image ; text] → logits at the text positions; with `labels` [B, L] the LM loss, where
        the token after position t is labels[:, t + 1] (as HF causal LMs) and IGNORE_INDEX marks what is not
        learned (prompt, padding); `segment_ids` packs several texts per image (see the module docstring).
        Retrieval part: matching (image, text) pairs → the contrastive loss; without `retrieval_pixel_values` the
        images are the generation part's, row i ↔ retrieval text i, pooled from that same pass (the patches never
        read text, so this equals `encode_image`). Drawing part: a description and the patch codes of its image
        [B, patches] → cross-entropy of each code given the text and the codes before it. All parts in one call, so
        that one DDP forward covers every task of a multi-task step."""
        out = UnifiedMultimodalOutput()
        patch_states = None
        if input_ids is not None:
            hidden, num_image = self.model(pixel_values, input_ids, attention_mask, segment_ids)
            patch_states = hidden[:, :num_image] if num_image else None
            out.logits = self.lm_head(hidden[:, num_image:])
            if labels is not None:
                out.lm_loss = F.cross_entropy(
                    out.logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX
                )
        if retrieval_input_ids is not None:
            if retrieval_pixel_values is not None:
                image_embeds = self.encode_image(retrieval_pixel_values)
            elif patch_states is not None and len(patch_states) == len(retrieval_input_ids):
                image_embeds = self.image_embedding(patch_states)
            else:
                raise ShapeError("retrieval_input_ids needs their images: retrieval_pixel_values, or pixel_values "
                                 "with input_ids, one row per retrieval text")  # fmt: skip
            text_embeds = self.encode_text(retrieval_input_ids, retrieval_attention_mask)
            out.retrieval_loss = self.contrastive_loss(image_embeds, text_embeds)
        elif retrieval_pixel_values is not None:
            raise ShapeError("retrieval_pixel_values needs retrieval_input_ids (their matching texts)")
        if draw_codes is not None:
            logits = self.code_logits(draw_input_ids, draw_attention_mask, draw_codes[:, :-1])
            out.draw_loss = F.cross_entropy(logits.flatten(0, 1).float(), draw_codes.flatten())
        losses = [loss for loss in (out.lm_loss, out.retrieval_loss, out.draw_loss) if loss is not None]
        out.loss = sum(losses) if losses else None
        return out

    def code_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, codes: torch.Tensor):
        """Logits [B, n + 1, K] for patch code 0..n given the text and `codes` [B, n] so far."""
        if codes.shape[1] >= self.config.num_patches:
            raise ShapeError(f"{codes.shape[1]} codes given; an image has {self.config.num_patches}, so at most "
                             f"{self.config.num_patches - 1} can precede a prediction")  # fmt: skip
        start = torch.full((len(codes), 1), self.config.image_codebook_size, dtype=torch.long, device=codes.device)
        hidden = self.model.forward_draw(input_ids, attention_mask, torch.cat([start, codes], 1))
        return self.code_head(hidden[:, input_ids.shape[1] :])

    @torch.no_grad()
    def draw(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, temperature: float = 0.0,
        generator: torch.Generator | None = None, guidance: float = 1.0,
    ) -> torch.Tensor:  # fmt: skip
        """Patch codes [B, num_patches] of an image for each description (right-padded input_ids [B, L]): greedy
        (temperature 0) or sampled. Each description is read once (with its start code), each code is one step.

        guidance ≠ 1: classifier-free guidance (as Parti and Chameleon draw), logits = u + guidance · (c − u) with c
        the description's logits and u those of the null description ([BOS] alone; train with
        `draw_unconditional` > 0 so the model knows it)."""
        mask = description_mask(self.config, input_ids, attention_mask)
        if guidance <= 0:
            raise ConfigError(f"guidance must be > 0 (1 = the description alone), got {guidance}")
        texts = [row[: int(n)] for row, n in zip(input_ids, mask.sum(1), strict=True)]
        batch = len(texts)
        if guidance != 1:  # the null descriptions decode beside the real ones, as rows B..2B-1
            texts += [input_ids.new_full((1,), self.config.bos_token_id)] * batch
        start = self.config.image_codebook_size

        def read(rows: list[int], caches: list[LayerCache]) -> tuple[torch.Tensor, int]:
            ids = torch.stack([texts[r] for r in rows])
            x = torch.cat([self.model.embed_text(ids), self.model.embed_codes(torch.full_like(ids[:, :1], start))], 1)
            masks = drawing_masks(torch.ones_like(ids, dtype=torch.bool), 1)
            valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            return self.model.run_layers(x, masks, slice(ids.shape[1], x.shape[1]), valid, caches), ids.shape[1]

        cache, hidden = self.model.prefill_groups([len(t) for t in texts], read)
        codes = []
        for index in range(self.config.num_patches):
            if index:
                previous = codes[-1] if guidance == 1 else codes[-1].repeat(2, 1)  # both halves continue the same code
                x = self.model.embed_codes(previous, first_position=index)
                hidden = self.model.decode_step(x, cache, image_grows=True)[:, -1]
            logits = self.code_head(hidden).float()
            if guidance != 1:
                conditional, unconditional = logits[:batch], logits[batch:]
                logits = unconditional + guidance * (conditional - unconditional)
            if temperature > 0:
                codes.append(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator))
            else:
                codes.append(logits.argmax(-1, keepdim=True))
        return torch.cat(codes, 1)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, projection_dim], L2-normalised: the blocks over the patches alone, mean-pooled."""
        hidden, _ = self.model(pixel_values=pixel_values)
        return self.image_embedding(hidden)

    def image_embedding(self, patch_states: torch.Tensor) -> torch.Tensor:
        """Final patch states [B, P, D] → [B, projection_dim], mean-pooled, projected, L2-normalised."""
        return F.normalize(self.image_projection(patch_states.mean(1)), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, projection_dim], L2-normalised: the blocks over the text alone, mean-pooled over its tokens."""
        hidden, _ = self.model(input_ids=input_ids, attention_mask=attention_mask)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        weights = mask[..., None].to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1)
        return F.normalize(self.text_projection(pooled), dim=-1)

    def contrastive_loss(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """CLIP's symmetric InfoNCE over a batch of matching pairs (row i ↔ column i)."""
        logits = self.logit_scale.exp().clamp(max=100) * image_embeds @ text_embeds.T
        targets = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    @torch.no_grad()
    def generate(
        self, pixel_values: torch.Tensor, prompts: list[list[int]], max_new_tokens: int | None = None
    ) -> list[list[int]]:
        """Greedy continuation of each prompt (token ids, no padding) about its image; stops at EOS, after
        `max_new_tokens` (None: no limit of its own) or when the text reaches max_text_positions. Image and prompt
        are read once, then each token is one step over the cache. Returns the new tokens of each row, without EOS."""
        if len(prompts) != len(pixel_values):
            raise ShapeError(f"{len(prompts)} prompts for {len(pixel_values)} images")
        if min(map(len, prompts), default=1) == 0:
            raise ShapeError("every prompt needs at least one token (the generation prompt)")
        device = pixel_values.device

        def read(rows: list[int], caches: list[LayerCache]) -> tuple[torch.Tensor, int]:
            ids = torch.tensor([prompts[r] for r in rows], device=device)
            x = torch.cat([self.model.embed_image(pixel_values[rows]), self.model.embed_text(ids)], 1)
            num_image = x.shape[1] - ids.shape[1]
            masks = hierarchical_masks(num_image, torch.ones_like(ids, dtype=torch.bool))
            valid = torch.ones(x.shape[:2], dtype=torch.bool, device=device)
            return self.model.run_layers(x, masks, slice(0, num_image), valid, caches), num_image

        cache, hidden = self.model.prefill_groups([len(p) for p in prompts], read)
        rows = [list(p) for p in prompts]
        done = [False] * len(rows)
        for step in range(self.config.max_text_positions if max_new_tokens is None else max_new_tokens):
            if step:
                last = torch.tensor([row[-1] for row in rows], device=device)[:, None]
                positions = cache.positions.clamp(max=self.config.max_text_positions - 1)[:, None]  # finished rows
                hidden = self.model.decode_step(self.model.embed_text(last, positions), cache, image_grows=False)[:, -1]
            next_ids = self.lm_head(hidden).argmax(-1).tolist()
            for i, token in enumerate(next_ids):
                if done[i]:
                    continue
                if token == self.config.eos_token_id or len(rows[i]) >= self.config.max_text_positions:
                    done[i] = True
                else:
                    rows[i].append(token)
            if all(done):
                break
        return [row[len(p) :] for row, p in zip(rows, prompts, strict=True)]
