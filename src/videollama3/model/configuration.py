"""Configuration of VideoLLaMA3: one config for the whole model, in the official release layout.

The official ``config.json`` (``model_type: videollama3_qwen2``) keeps the Qwen2 LLM fields flat at the
top level and adds the vision encoder (``vision_encoder_config``, where only non-default fields may
appear), the projector type, the pruning switch and the id of the ``<image>`` placeholder token.
``VideoLLaMA3Config`` *is* a ``Qwen2Config`` (so transformers' Qwen2 modules, generation, PEFT and FSDP
read it directly) with those fields added.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PretrainedConfig, Qwen2Config

from ..errors import ConfigError

VISION_MODEL_TYPE = "videollama3_vision_encoder"
MODEL_TYPE = "videollama3_qwen2"
PROJECTOR_TYPES = ("linear", "mlp2x_gelu")


@strict
class VideoLLaMA3VisionConfig(PretrainedConfig):
    """The SigLIP-derived any-resolution vision encoder.

    Defaults are those of the official ``Videollama3VisionEncoderConfig`` (SigLIP-base widths), because
    released configs omit every field equal to them; the released encoder is SigLIP-so400m
    (1152 / 4304 / 27 layers / 16 heads / patch 14) and says so explicitly.
    """

    model_type = VISION_MODEL_TYPE
    base_config_key = "vision_encoder_config"

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    patch_size: int = 16
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    attention_dropout: float | int = 0.0
    rope_theta: float = 10000.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"vision_encoder_config: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if (self.hidden_size // self.num_attention_heads) % 4:
            raise ConfigError(
                f"vision_encoder_config: head_dim {self.hidden_size // self.num_attention_heads} must be a "
                "multiple of 4 for the 2D rotary embedding (half of it per axis, in pairs)"
            )
        super().__post_init__(**kwargs)

    def non_default_dict(self) -> dict[str, Any]:
        """The fields that differ from the defaults, as the official config writes them."""
        defaults = VideoLLaMA3VisionConfig()
        out: dict[str, Any] = {"model_type": VISION_MODEL_TYPE}
        for name in VISION_FIELDS:
            value = getattr(self, name)
            if value != getattr(defaults, name):
                out[name] = value
        return out


VISION_FIELDS = tuple(
    name for name in VideoLLaMA3VisionConfig.__annotations__ if not name.startswith("_") and name != "model_type"
)


@strict
class VideoLLaMA3Config(Qwen2Config):
    """Qwen2 LLM fields (flat, as in the release) plus the VideoLLaMA3 additions.

    Args (besides Qwen2's):
        vision_encoder: name of a separate vision checkpoint (always ``None`` in released models).
        vision_encoder_config: dict of the vision encoder's non-default fields.
        mm_projector_type: ``"mlp2x_gelu"`` (released) or ``"linear"``.
        use_token_compression: apply the Differential Frame Pruner to videos.
        image_token_index: id of the ``<image>`` placeholder token.
        compression_threshold: DiffFP threshold on the mean |pixel difference| x 255.
        compression_min_tokens: tokens every frame keeps at least.
    """

    model_type = MODEL_TYPE
    sub_configs = {}

    vision_encoder: str | None = None
    vision_encoder_config: dict | PretrainedConfig | None = None
    mm_projector_type: str = "mlp2x_gelu"
    use_token_compression: bool = True
    image_token_index: int = 151665
    compression_threshold: float = 0.1
    compression_min_tokens: int = 1

    def __post_init__(self, **kwargs):
        vision = self.vision_encoder_config
        if vision is None:
            vision = {}
        if isinstance(vision, PretrainedConfig):
            vision = vision.to_dict()
        if not isinstance(vision, dict):
            raise ConfigError(f"vision_encoder_config must be a dict, got {type(vision).__name__}")
        vision = {k: v for k, v in vision.items() if k in VISION_FIELDS}
        self._vision_config = VideoLLaMA3VisionConfig(**vision)
        self.vision_encoder_config = self._vision_config.non_default_dict()
        if self.mm_projector_type not in PROJECTOR_TYPES and not _is_mlp_gelu(self.mm_projector_type):
            raise ConfigError(
                f"mm_projector_type {self.mm_projector_type!r} is not supported: use one of {PROJECTOR_TYPES}"
            )
        if not 0 <= self.image_token_index < self.vocab_size:
            raise ConfigError(
                f"image_token_index {self.image_token_index} is outside the vocabulary (size {self.vocab_size})"
            )
        if self.compression_min_tokens < 0:
            raise ConfigError(f"compression_min_tokens must be >= 0, got {self.compression_min_tokens}")
        super().__post_init__(**kwargs)

    @property
    def vision_config(self) -> VideoLLaMA3VisionConfig:
        return self._vision_config

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("_vision_config", None)
        out["vision_encoder_config"] = self._vision_config.non_default_dict()
        # Older transformers (and the official remote code) read rope_theta at the top level.
        if isinstance(self.rope_parameters, dict) and "rope_theta" in self.rope_parameters:
            out.setdefault("rope_theta", self.rope_parameters["rope_theta"])
        return out


def _is_mlp_gelu(name: str) -> bool:
    return name.startswith("mlp") and name.endswith("x_gelu") and name[3:-6].isdigit()
