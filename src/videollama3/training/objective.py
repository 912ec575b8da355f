"""The training objective as one module: micro-batch in, summed token loss out.

Wrapping the model in a module whose ``forward`` computes the loss (instead of calling
``VideoLLaMA3ForCausalLM.forward`` and reducing its logits outside) does three things:

- FSDP's root unit is this module, so everything below runs inside one root forward (the root's
  parameters: embeddings, final norm, LM head, projector, patch embedding, are gathered once).
- The LLM is called with ``attention_mask=None`` and ``use_cache=False`` for packed rows: that is what
  makes transformers build a per-sample (block-diagonal) mask from the restarting position ids.
  ``VideoLLaMA3ForCausalLM.forward`` would pass an all-ones mask instead, and attention would cross samples.
- Logits are computed only at supervised positions: a 16k-token multimodal row has a few hundred answer
  tokens, and (16k x 152k) logits would be 10 GB in fp32 for nothing.

The loss returned is the *sum* of per-token cross-entropies (fp32); the trainer divides by the number of
supervised tokens of the whole global batch (all micro-batches, all ranks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .labels import IGNORE_INDEX


class TokenLoss(nn.Module):
    """``forward(micro-batch inputs) -> summed cross-entropy over supervised tokens`` (fp32 scalar).

    Args:
        model: a ``VideoLLaMA3ForCausalLM``, or a PEFT model wrapping one.
        always_run_vision: run the vision encoder and projector on a dummy image when a micro-batch has no
            visual input (text-only samples). Needed under FSDP: every rank must gather the same modules in
            the same order, and a rank with only text would otherwise skip the vision encoder's all-gathers
            while the others wait in them.
    """

    def __init__(self, model: nn.Module, always_run_vision: bool = False):
        super().__init__()
        self.model = model
        self.always_run_vision = always_run_vision

    @property
    def base(self) -> nn.Module:
        """The ``VideoLLaMA3ForCausalLM`` (under a PEFT wrapper, if any; LoRA layers live inside it)."""
        get_base = getattr(self.model, "get_base_model", None)
        return get_base() if callable(get_base) else self.model

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        grid_sizes: torch.Tensor | None = None,
        merge_sizes: torch.Tensor | None = None,
        compression_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            input_ids: (B, L); one row per packed micro-batch, or right-padded rows with ``attention_mask``.
            targets: (B, L) next-token targets (already shifted per sample), -100 where there is no loss.
            position_ids: (B, L), restarting at 0 for every packed sample.
            attention_mask: (B, L) for padded rows, ``None`` for packed rows.
            pixel_values, grid_sizes, merge_sizes, compression_mask: visual inputs of all samples, in order.
        """
        base = self.base
        mm = base.prepare_multimodal_inputs(
            input_ids, attention_mask, position_ids, None, pixel_values, grid_sizes, merge_sizes, compression_mask
        )
        loss = torch.zeros((), dtype=torch.float32, device=input_ids.device)
        if pixel_values is None and self.always_run_vision:
            loss = loss + 0.0 * self._dummy_visual_features(base).float().sum()
        hidden = base.model(
            inputs_embeds=mm.inputs_embeds,
            attention_mask=attention_mask,
            position_ids=mm.position_ids,
            use_cache=False,
        ).last_hidden_state  # (B, L, H)
        keep = targets != IGNORE_INDEX  # (B, L)
        logits = base.lm_head(hidden[keep]).float()  # (n_targets, V)
        return loss + F.cross_entropy(logits, targets[keep], reduction="sum")

    def _dummy_visual_features(self, base: nn.Module) -> torch.Tensor:
        """Projected features of one black 2 x 2-patch image: (4, H)."""
        patch = base.config.vision_config.patch_size
        weight = base.vision_encoder.embeddings.patch_embedding.weight
        pixels = torch.zeros(4, 3 * patch * patch, dtype=torch.float32, device=weight.device)
        return base.encode_images(pixels, torch.tensor([[1, 2, 2]]), torch.tensor([1]))
