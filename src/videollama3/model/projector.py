"""Vision-to-language projectors.

``mlp2x_gelu`` (the released one) is Linear(D_vis, H) -> GELU (exact erf) -> Linear(H, H), kept under a
``readout`` attribute so its weights are named ``mm_projector.readout.{0,2}.*`` as in the release.
``linear`` is a bare Linear (``mm_projector.{weight,bias}``), as in the official code.
"""

from __future__ import annotations

from torch import nn


class MlpGeluProjector(nn.Module):
    def __init__(self, in_features: int, out_features: int, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(out_features, out_features)]
        self.readout = nn.Sequential(*layers)

    def forward(self, x):
        return self.readout(x)


def build_projector(projector_type: str, in_features: int, out_features: int) -> nn.Module:
    if projector_type == "linear":
        return nn.Linear(in_features, out_features)
    if projector_type.startswith("mlp") and projector_type.endswith("x_gelu"):
        return MlpGeluProjector(in_features, out_features, depth=int(projector_type[3:-6]))
    from ..errors import ConfigError

    raise ConfigError(f"mm_projector_type {projector_type!r} is not supported: use 'mlp2x_gelu' or 'linear'")
