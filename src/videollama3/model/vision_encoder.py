"""The VideoLLaMA3 vision encoder: SigLIP-derived, any resolution, 2D rotary positions.

Input is a packed sequence of patches from many images and video frames (rows of 3*14*14 values,
channel-major, in merge-block order: see ``processing``). There is no learned position embedding: each
patch gets a 2D rotary embedding of its (row, col) in its own frame, so any resolution works. Attention is
restricted to each frame or image (``vision_attention``). After the post-LayerNorm every item is
downsampled by its merge size (bilinear, i.e. an m x m mean for m = 2) to give the visual tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from .configuration import VideoLLaMA3VisionConfig
from .vision_attention import segment_attention


def vision_position_ids(grid_sizes: torch.Tensor, merge_sizes: torch.Tensor) -> torch.Tensor:
    """(row, col) of every patch, in the processor's merge-block order, repeated for every frame.

    Args:
        grid_sizes: (n_items, 3) [t, gh, gw] in patches.
        merge_sizes: (n_items,)

    Returns:
        (N, 2) long, N = sum t * gh * gw.
    """
    positions = []
    for (t, gh, gw), m in zip(grid_sizes.tolist(), merge_sizes.tolist()):
        rows = torch.arange(gh).view(gh // m, m, 1, 1).expand(gh // m, m, gw // m, m)
        cols = torch.arange(gw).view(1, 1, gw // m, m).expand(gh // m, m, gw // m, m)
        # block order: block row, block col, row in block, col in block
        rows = rows.permute(0, 2, 1, 3).reshape(-1)
        cols = cols.permute(0, 2, 1, 3).reshape(-1)
        positions.append(torch.stack([rows, cols], dim=-1).repeat(t, 1))
    return torch.cat(positions) if positions else torch.zeros(0, 2, dtype=torch.long)


class VisionRotaryEmbedding(nn.Module):
    """2D RoPE: half of the rotary dims encode the row, half the column (theta 10000)."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        # Computed on the fly rather than kept as a buffer: it is tiny, and a buffer would have to survive
        # meta-device construction and dtype casts (bf16 frequencies would corrupt the angles).
        self.rotary_dim = head_dim // 2  # per axis rotary_dim/2 frequencies; rows + cols -> rotary_dim angles
        self.theta = theta

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids (N, 2) -> cos, sin (N, head_dim) in fp32."""
        exponents = torch.arange(0, self.rotary_dim, 2, dtype=torch.float32, device=position_ids.device)
        inv_freq = 1.0 / (self.theta ** (exponents / self.rotary_dim))
        angles = position_ids.float()[:, :, None] * inv_freq  # (N, 2, rotary_dim/2)
        angles = angles.flatten(1)  # (N, rotary_dim): rows then cols
        angles = torch.cat([angles, angles], dim=-1)  # (N, head_dim), rotate_half pairs j and j + head_dim/2
        return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (N, heads, head_dim) in fp32 (bf16 angles would lose the high positions), cast back."""
    xf = x.float()
    cos, sin = cos[:, None, :], sin[:, None, :]
    return (xf * cos + _rotate_half(xf) * sin).to(x.dtype)


class VisionAttention(nn.Module):
    def __init__(self, config: VideoLLaMA3VisionConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scale = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x, rotary, seq_lens: list[int], backend: str) -> torch.Tensor:
        n = x.shape[0]
        q = self.q_proj(x).view(n, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(n, self.num_heads, self.head_dim)
        v = self.v_proj(x).view(n, self.num_heads, self.head_dim)
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        dropout = self.dropout if self.training else 0.0
        out = segment_attention(q, k, v, seq_lens, self.scale, backend, dropout)  # (N, H, D)
        return self.out_proj(out.reshape(n, -1))


class VisionMLP(nn.Module):
    def __init__(self, config: VideoLLaMA3VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class VisionEncoderLayer(nn.Module):
    """Pre-LN transformer layer."""

    def __init__(self, config: VideoLLaMA3VisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = VisionAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = VisionMLP(config)

    def forward(self, x, rotary, seq_lens, backend):
        x = x + self.self_attn(self.layer_norm1(x), rotary, seq_lens, backend)
        return x + self.mlp(self.layer_norm2(x))


class VisionEmbeddings(nn.Module):
    def __init__(self, config: VideoLLaMA3VisionConfig):
        super().__init__()
        self.num_channels, self.patch_size = config.num_channels, config.patch_size
        self.patch_embedding = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, C*P*P) -> (N, D). A stride-P conv over one P x P patch is a matmul with the flattened kernel."""
        weight = self.patch_embedding.weight.flatten(1)  # (D, C*P*P), channel-major like the rows
        return F.linear(pixel_values.to(weight.dtype), weight, self.patch_embedding.bias)


class VisionEncoder(nn.Module):
    """Packed patches -> visual tokens (one per merge block of every image / frame)."""

    def __init__(self, config: VideoLLaMA3VisionConfig):
        super().__init__()
        self.config = config
        self.embeddings = VisionEmbeddings(config)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(VisionEncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.rotary = VisionRotaryEmbedding(config.hidden_size // config.num_attention_heads, config.rope_theta)
        self.attn_backend = "auto"
        self.gradient_checkpointing = False
        # Read by VideoLLaMA3PreTrainedModel._init_weights: the encoder keeps its own initialisation scale.
        for module in self.modules():
            module.initializer_range = config.initializer_range

    def forward(self, pixel_values: torch.Tensor, grid_sizes: torch.Tensor, merge_sizes: torch.Tensor) -> torch.Tensor:
        """
        Args:
            pixel_values: (N, C*P*P) patch rows of every item, concatenated.
            grid_sizes: (n_items, 3) [t, gh, gw].
            merge_sizes: (n_items,)

        Returns:
            (M, D) features, M = sum t * (gh/m) * (gw/m), items and frames in order, tokens in raster order.
        """
        grid_sizes = torch.as_tensor(grid_sizes).reshape(-1, 3).cpu()
        merge_sizes = torch.as_tensor(merge_sizes).reshape(-1).cpu()
        x = self.embeddings(pixel_values)  # (N, D)
        cos, sin = self.rotary(vision_position_ids(grid_sizes, merge_sizes).to(x.device))  # (N, head_dim)
        seq_lens = [h * w for t, h, w in grid_sizes.tolist() for _ in range(t)]  # one segment per frame
        for layer in self.encoder.layers:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(
                    layer, x, (cos, sin), seq_lens, self.attn_backend, use_reentrant=False
                )
            else:
                x = layer(x, (cos, sin), seq_lens, self.attn_backend)
        x = self.post_layernorm(x)
        return merge_tokens(x, grid_sizes, merge_sizes)


def merge_tokens(x: torch.Tensor, grid_sizes: torch.Tensor, merge_sizes: torch.Tensor) -> torch.Tensor:
    """Downsample each item's (gh, gw) grid by its merge size m (bilinear, align_corners=False).

    Patches arrive in merge-block order, so m*m consecutive rows are one block. For m = 2 the bilinear
    resize samples exactly between the four pixels of a block, i.e. it is their mean; other m go through
    ``F.interpolate`` on the raster grid. The output is in raster order of the merged grid, which is the
    block order of the input.
    """
    outputs, start = [], 0
    for (t, gh, gw), m in zip(grid_sizes.tolist(), merge_sizes.tolist()):
        n = t * gh * gw
        item = x[start : start + n]
        start += n
        if m == 1:
            outputs.append(item)
        elif m == 2:
            outputs.append(item.view(-1, 4, item.shape[-1]).mean(dim=1))
        else:
            d = item.shape[-1]
            raster = item.view(t, gh // m, gw // m, m, m, d).permute(0, 5, 1, 3, 2, 4).reshape(t, d, gh, gw)
            small = F.interpolate(raster, size=(gh // m, gw // m), mode="bilinear", align_corners=False)
            outputs.append(small.permute(0, 2, 3, 1).reshape(-1, d))
    return torch.cat(outputs) if outputs else x.new_zeros(0, x.shape[-1])
