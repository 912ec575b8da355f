"""VideoLLaMA3: vision encoder + projector + Qwen2 LLM.

``VideoLLaMA3ForCausalLM`` *is* transformers' ``Qwen2ForCausalLM`` (so ``generate()``, KV caches, PEFT,
FSDP and ``from_pretrained`` with ``dtype`` / ``device_map`` / low-memory loading behave as users expect)
whose ``model`` additionally owns the ``vision_encoder`` and the ``mm_projector``. Parameter names are
those of the official release (``model.vision_encoder.*``, ``model.mm_projector.readout.*``,
``model.layers.*``, ``lm_head``), so released checkpoints load as they are.

Visual inputs are merged into the prompt embeddings: the features of every image / frame replace the
``<image>`` placeholder tokens in order. Video tokens pruned by the Differential Frame Pruner leave the
sequence with their placeholders. Inputs may come pruned (our processor prunes per sample, so batches of
different videos pad correctly) or unpruned (the official processor, the parity fixtures): the model tells
them apart by counting placeholders, and re-pads the batch when it has to drop tokens itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import GenerationMixin, Qwen2Model
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.qwen2.modeling_qwen2 import Qwen2PreTrainedModel

from ..errors import InputError
from .configuration import VideoLLaMA3Config
from .llm_cache import cache_kwargs, holds_tokens, output_cache, pop_cache
from .projector import build_projector
from .pruning import pruning_mask
from .token_layout import merged_tokens_per_item, positions_from_mask
from .vision_encoder import VisionEncoder, VisionEncoderLayer

if TYPE_CHECKING:
    from .live import LiveSession

IGNORE_INDEX = -100


@dataclass
class MultimodalInputs:
    """What the LLM reads after visual features were merged (and pruned placeholders dropped)."""

    inputs_embeds: torch.Tensor  # (B, L, H)
    attention_mask: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    labels: torch.Tensor | None  # (B, L)


class VideoLLaMA3PreTrainedModel(Qwen2PreTrainedModel):
    config: VideoLLaMA3Config
    config_class = VideoLLaMA3Config
    _no_split_modules = ["Qwen2DecoderLayer", "VisionEncoderLayer"]
    input_modalities = ("image", "video", "text")

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Qwen2's initialisation, except that the vision encoder's layers draw from its own
        ``vision_encoder_config.initializer_range`` (the LLM and the projector use the top-level one)."""
        std = getattr(module, "initializer_range", None)  # set on every module of VisionEncoder
        if std is not None and isinstance(module, (nn.Linear, nn.Conv2d)):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
            return
        super()._init_weights(module)


class VideoLLaMA3Model(VideoLLaMA3PreTrainedModel, Qwen2Model):
    """Qwen2's decoder stack plus the vision encoder and the projector (official parameter names)."""

    def __init__(self, config: VideoLLaMA3Config):
        Qwen2Model.__init__(self, config)
        vision_config = config.vision_config
        self.vision_encoder = VisionEncoder(vision_config)
        self.mm_projector = build_projector(config.mm_projector_type, vision_config.hidden_size, config.hidden_size)
        self.post_init()


class VideoLLaMA3ForCausalLM(VideoLLaMA3PreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: VideoLLaMA3Config):
        super().__init__(config)
        self.model = VideoLLaMA3Model(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load the official layout or transformers' ``video_llama_3`` layout (local folder or hub cache).

        The checkpoint is checked first (files present, headers intact, names and shapes as the config
        implies) so a broken folder fails with a ``CheckpointError`` naming the file, not deep in a loader.
        """
        from .layouts import prepare_from_pretrained

        path, config, extra = prepare_from_pretrained(pretrained_model_name_or_path, kwargs, cls)
        kwargs.update(extra)
        model = super().from_pretrained(path, *args, **kwargs)
        if "key_mapping" in extra:
            # transformers would reverse the renaming on save; we save the official layout by default.
            model._weight_conversions = []
        return model

    # ------------------------------------------------------------------ vision
    @property
    def vision_encoder(self) -> VisionEncoder:
        return self.model.vision_encoder

    @property
    def mm_projector(self) -> nn.Module:
        return self.model.mm_projector

    def set_vision_attention_backend(self, backend: str) -> None:
        """``"auto"`` (default), ``"sdpa"``, ``"flash"`` or ``"flex"``: see ``vision_attention``."""
        from .vision_attention import resolve_backend

        resolve_backend(backend, self.device)  # validates the name
        self.vision_encoder.attn_backend = backend

    def encode_images(self, pixel_values, grid_sizes, merge_sizes) -> torch.Tensor:
        """(N, 588) patches -> (M, H) projected visual tokens (all tokens, before pruning)."""
        encoder = self.vision_encoder
        dtype = encoder.embeddings.patch_embedding.weight.dtype
        features = encoder(pixel_values.to(dtype), grid_sizes, merge_sizes)  # (M, D_vis)
        return self.mm_projector(features)  # (M, H)

    def compute_compression_mask(self, pixel_values, grid_sizes, merge_sizes) -> torch.Tensor:
        """DiffFP keep-mask over all visual tokens (all True when pruning is off in the config)."""
        if not self.config.use_token_compression:
            total = sum(merged_tokens_per_item(grid_sizes, merge_sizes))
            return torch.ones(total, dtype=torch.bool, device=pixel_values.device)
        return pruning_mask(
            pixel_values,
            grid_sizes,
            merge_sizes,
            threshold=self.config.compression_threshold,
            min_tokens=self.config.compression_min_tokens,
        )

    def prepare_multimodal_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        grid_sizes: torch.Tensor | None = None,
        merge_sizes: torch.Tensor | None = None,
        compression_mask: torch.Tensor | None = None,
    ) -> MultimodalInputs:
        """Embed ``input_ids`` and put the visual features in place of the ``<image>`` tokens.

        Args:
            input_ids: (B, L) with one ``<image>`` id per visual token, pruned or not.
            attention_mask: (B, L), 0 on padding. Left or right padding.
            pixel_values: (N, 588) patches of every item of every sample, in order.
            grid_sizes, merge_sizes: (n_items, 3), (n_items,).
            compression_mask: (M,) bool DiffFP keep-mask; computed from the pixels when absent.
        """
        embed = self.get_input_embeddings()
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        image_token = self.config.image_token_index
        is_image = input_ids == image_token  # (B, L)
        n_placeholders = int(is_image.sum())

        if pixel_values is None:
            if n_placeholders:
                raise InputError(
                    f"input_ids hold {n_placeholders} <image> tokens (id {image_token}) but no pixel_values were given"
                )
            embeds = embed(input_ids)
            if position_ids is None:
                position_ids = positions_from_mask(attention_mask)
            return MultimodalInputs(embeds, attention_mask, position_ids, labels)

        if grid_sizes is None or merge_sizes is None:
            raise InputError("pixel_values need grid_sizes and merge_sizes (one row / value per image or video)")
        grid_sizes = torch.as_tensor(grid_sizes).reshape(-1, 3).cpu()
        merge_sizes = torch.as_tensor(merge_sizes).reshape(-1).cpu()
        features = self.encode_images(pixel_values, grid_sizes, merge_sizes)  # (M, H)
        n_features = features.shape[0]
        if compression_mask is None:
            compression_mask = self.compute_compression_mask(pixel_values, grid_sizes, merge_sizes)
        compression_mask = compression_mask.to(features.device, torch.bool).reshape(-1)
        if compression_mask.numel() != n_features:
            raise InputError(
                f"compression_mask has {compression_mask.numel()} entries but the visual inputs give "
                f"{n_features} tokens (grid_sizes {grid_sizes.tolist()}, merge_sizes {merge_sizes.tolist()})"
            )
        n_kept = int(compression_mask.sum())

        token_keep = None
        if n_placeholders == n_kept:  # the processor already removed the pruned placeholders
            features = features[compression_mask]
        elif n_placeholders == n_features:  # unpruned prompt: drop pruned tokens and their placeholders here
            features = features[compression_mask]
            if n_kept < n_features:
                token_keep = torch.ones_like(is_image)
                token_keep[is_image] = compression_mask.to(is_image.device)
        else:
            raise InputError(
                f"input_ids hold {n_placeholders} <image> tokens but the visual inputs give {n_features} tokens "
                f"({n_kept} after frame pruning): the prompt and the media do not match"
            )

        receives = is_image if token_keep is None else is_image & token_keep  # placeholders that stay
        embeds = self.merge_visual_features(input_ids, features, receives)  # (B, L, H)
        if token_keep is None:
            if position_ids is None:
                position_ids = positions_from_mask(attention_mask)
            return MultimodalInputs(embeds, attention_mask, position_ids, labels)
        return _drop_tokens(embeds, attention_mask, labels, token_keep.to(embeds.device))

    def merge_visual_features(
        self, input_ids: torch.Tensor, features: torch.Tensor | None, receives: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embed ``input_ids`` (..., L) and put ``features`` (N, H), in order, in place of the ``<image>`` tokens.

        ``receives``: the positions that get the features, when not every ``<image>`` token does (pruned
        placeholders). There must be one feature per position (:meth:`check_visual_token_count`);
        ``features`` None: plain token embeddings. Used by :meth:`prepare_multimodal_inputs` and by the
        serving engine (which embeds only the part of a prompt after a cached prefix).
        """
        embeds = self.get_input_embeddings()(input_ids)  # (..., L, H)
        if features is None:
            return embeds
        if receives is None:
            receives = input_ids == self.config.image_token_index
        receives = receives.to(embeds.device)
        self.check_visual_token_count(int(receives.sum()), features.shape[0])
        return embeds.masked_scatter(receives.unsqueeze(-1), features.to(embeds.dtype))

    @staticmethod
    def check_visual_token_count(n_placeholders: int, n_visual: int) -> None:
        """Raise an ``InputError`` unless a prompt's ``<image>`` tokens and its media's kept visual tokens match."""
        if n_placeholders != n_visual:
            raise InputError(
                f"the prompt holds {n_placeholders} <image> tokens but its media give {n_visual} visual tokens "
                "after frame pruning"
            )

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        pixel_values: torch.FloatTensor | None = None,
        grid_sizes: torch.LongTensor | None = None,
        merge_sizes: torch.LongTensor | None = None,
        modals: list[str] | None = None,
        compression_mask: torch.BoolTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits for the sequence the LLM sees (after pruning), and the loss when ``labels`` are given.

        ``modals`` is accepted for compatibility with the official processor output and not needed: an
        item is a video (prunable) when it has more than one frame. The KV cache comes in ``kwargs`` under
        the name the caller's transformers uses (``cache`` or ``past_key_values``, see ``llm_cache``): a
        call with a cache that already holds tokens is a decode step, whose ``input_ids`` are new tokens.
        """
        cache = pop_cache(kwargs)
        if inputs_embeds is None and (pixel_values is not None or not holds_tokens(cache)):
            if input_ids is None:
                raise InputError("forward needs input_ids or inputs_embeds")
            mm = self.prepare_multimodal_inputs(
                input_ids, attention_mask, position_ids, labels, pixel_values, grid_sizes, merge_sizes, compression_mask
            )
            inputs_embeds, attention_mask, position_ids, labels = (
                mm.inputs_embeds,
                mm.attention_mask,
                mm.position_ids,
                mm.labels,
            )
            input_ids = None
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **cache_kwargs(cache),
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden_states = hidden_states[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden_states = hidden_states[:, logits_to_keep]
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **cache_kwargs(output_cache(outputs)),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        grid_sizes: torch.LongTensor | None = None,
        merge_sizes: torch.LongTensor | None = None,
        modals: list[str] | None = None,
        compression_mask: torch.BoolTensor | None = None,
        **kwargs,
    ):
        """Like the official model: returns only the newly generated tokens, (B, new_tokens).

        Batches are left-padded (the processor does so); samples may carry different media.
        """
        if kwargs.get("inputs_embeds") is not None:
            return super().generate(attention_mask=attention_mask, **kwargs)
        if input_ids is None:
            raise InputError("generate needs input_ids (the processor's output)")
        device = self.get_input_embeddings().weight.device
        input_ids = input_ids.to(device)
        if attention_mask is not None:
            attention_mask = attention_mask.to(device)
            if input_ids.shape[0] > 1 and not bool(attention_mask[:, -1].all()):
                raise InputError(
                    "batched generation needs left padding (attention_mask must end with 1 in every row): "
                    "use the processor's padding, or tokenizer.padding_side = 'left'"
                )
        if pixel_values is not None:
            pixel_values = pixel_values.to(device)
        mm = self.prepare_multimodal_inputs(
            input_ids, attention_mask, None, None, pixel_values, grid_sizes, merge_sizes, compression_mask
        )
        return super().generate(inputs_embeds=mm.inputs_embeds, attention_mask=mm.attention_mask, **kwargs)

    # ------------------------------------------------------------------ live video
    def live(self, processor, **options) -> LiveSession:
        """A live session: frames one at a time, questions at any moment, answers from the KV cache.

        ``processor``: this checkpoint's ``VideoLLaMA3Processor``; ``options``: see ``LiveSession`` (model/live.py,
        docs/live.md). ``session.add_frame(image, t)``, ``session.ask(text)``.
        """
        from .live import LiveSession

        return LiveSession(self, processor, **options)


def _drop_tokens(embeds, attention_mask, labels, token_keep) -> MultimodalInputs:
    """Remove tokens where ``token_keep`` is False and re-pad the batch on the side it was padded."""
    real = attention_mask.bool()
    keep = token_keep & real  # (B, L)
    lengths = keep.sum(-1)  # (B,)
    new_len = int(lengths.max())
    batch, _, hidden = embeds.shape
    left = bool(real[:, -1].all())  # every row ends with a real token: left padding (or none)
    out_embeds = embeds.new_zeros(batch, new_len, hidden)
    out_mask = attention_mask.new_zeros(batch, new_len)
    out_labels = labels.new_full((batch, new_len), IGNORE_INDEX) if labels is not None else None
    for b in range(batch):
        n = int(lengths[b])
        sl = slice(new_len - n, new_len) if left else slice(0, n)
        out_embeds[b, sl] = embeds[b][keep[b]]
        out_mask[b, sl] = 1
        if labels is not None:
            out_labels[b, sl] = labels[b][keep[b]]
    return MultimodalInputs(out_embeds, out_mask, positions_from_mask(out_mask), out_labels)


__all__ = ["VideoLLaMA3ForCausalLM", "VideoLLaMA3Model", "VideoLLaMA3PreTrainedModel", "VisionEncoderLayer"]
