"""The input embeddings of prompts to prefill: token embeddings with the visual features in place.

Visual features come from the :class:`~.cache.FeatureCache` or from one vision-encoder call for all the
items it misses; the model checks the placeholder count and merges them
(``VideoLLaMA3ForCausalLM.merge_visual_features``, as its own ``prepare_multimodal_inputs`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..errors import InputError
from ..model.token_layout import merged_tokens
from .cache import FeatureCache

if TYPE_CHECKING:
    from .engine import EngineStats
    from .scheduler import SequenceState


class PromptEmbedder:
    """Embeds prompts for ``model`` (on its device), counting encoder calls in ``stats``."""

    def __init__(self, model, feature_cache: FeatureCache | None, stats: EngineStats):
        self.model = model
        self.feature_cache = feature_cache
        self.stats = stats
        self.image_token_id = int(model.config.image_token_index)
        self.device = model.get_input_embeddings().weight.device

    def embed(self, seqs: Sequence[SequenceState], starts: Sequence[int]) -> list[torch.Tensor]:
        """(L_i - start_i, H) input embeddings of each prompt from token ``start_i`` on, visual features in place
        of the ``<image>`` tokens.

        Features are only looked up (or encoded) for prompts with placeholders from ``start_i`` on. The
        number of placeholders is checked against the visual tokens the media keep either way (from the
        compression mask, or from the features when there is no mask).
        """
        prompt_ids = [seq.prompt.input_ids.reshape(-1) for seq in seqs]
        is_image = [ids == self.image_token_id for ids in prompt_ids]
        needs = [
            seq.prompt.pixel_values is not None and (bool(im[start:].any()) or seq.prompt.compression_mask is None)
            for seq, im, start in zip(seqs, is_image, starts)
        ]
        features = iter(self.visual_features([seq for seq, need in zip(seqs, needs) if need]))
        out = []
        for seq, ids, im, start, need in zip(seqs, prompt_ids, is_image, starts, needs):
            feats = next(features) if need else None
            n_placeholders = int(im.sum())
            n_visual = feats.shape[0] if feats is not None else sum(seq.prompt.kept_per_item())
            self.model.check_visual_token_count(n_placeholders, n_visual)  # the whole prompt's
            if feats is not None:
                feats = feats[n_placeholders - int(im[start:].sum()) :]  # not those of the cached prefix
            out.append(self.model.merge_visual_features(ids[start:].to(self.device), feats))
        return out

    def visual_features(self, seqs: Sequence[SequenceState]) -> list[torch.Tensor | None]:
        """Kept visual features of each prompt, from the cache or one encoder call for all missing items."""
        found: dict[object, torch.Tensor] = {}
        missing: dict[object, tuple[torch.Tensor, tuple[int, int, int], int]] = {}
        per_seq_keys: list[list[object]] = []
        for seq in seqs:
            items = seq.prompt.items()
            cacheable = self.feature_cache is not None and len(seq.prompt.item_keys) == len(items)
            # Without content hashes an item is only shared with itself: key it by (sequence, index).
            keys: list[object] = list(seq.prompt.item_keys) if cacheable else [(id(seq), i) for i in range(len(items))]
            per_seq_keys.append(keys)
            for key, item in zip(keys, items):
                if key in found or key in missing:
                    continue
                cached = self.feature_cache.get(key) if cacheable else None
                if cached is not None:
                    found[key] = cached
                else:
                    missing[key] = item
        if missing:
            items = list(missing.values())
            pixel_values = torch.cat([rows for rows, _, _ in items]).to(self.device)
            grid_sizes = torch.tensor([grid for _, grid, _ in items], dtype=torch.long)
            merge_sizes = torch.tensor([m for _, _, m in items], dtype=torch.long)
            features = self.model.encode_images(pixel_values, grid_sizes, merge_sizes)
            self.stats.encoder_calls += 1
            self.stats.encoded_items += len(items)
            counts = [merged_tokens(grid, m) for _, grid, m in items]
            for key, feats in zip(missing, features.split(counts)):
                found[key] = feats
                if self.feature_cache is not None and isinstance(key, str):
                    self.feature_cache.put(key, feats)

        out: list[torch.Tensor | None] = []
        for seq, keys in zip(seqs, per_seq_keys):
            prompt = seq.prompt
            if prompt.pixel_values is None:
                out.append(None)
                continue
            feats = torch.cat([found[key] for key in keys])
            mask = prompt.compression_mask
            if mask is None:
                mask = self.model.compute_compression_mask(
                    prompt.pixel_values.to(self.device), prompt.grid_sizes, prompt.merge_sizes
                )
            mask = mask.reshape(-1).to(feats.device, torch.bool)
            if mask.numel() != feats.shape[0]:
                raise InputError(
                    f"compression_mask has {mask.numel()} entries but the media give {feats.shape[0]} visual tokens"
                )
            out.append(feats[mask])
        return out
