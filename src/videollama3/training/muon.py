"""Muon for the hidden matrices, AdamW for everything else: one optimizer object for the trainer.

Muon (Jordan et al., 2024, "Muon: an optimizer for hidden layers in neural networks") replaces each
hidden weight matrix's momentum update by its nearest semi-orthogonal matrix (five Newton-Schulz
iterations), so that every direction of the update moves at the same rate. Embeddings, the output head,
norms and biases keep AdamW, as its authors prescribe. The update is scaled by ``0.2 * sqrt(max(A, B))``
for an ``A x B`` matrix (Liu et al., 2025, "Muon is scalable for LLM training"), which matches AdamW's
update RMS, so the recipe's AdamW learning rates carry over.

Why it is here: a small LLM trained from scratch learns in-context lookup (the matching step of a
multiple-choice answer) several times sooner with Muon than with AdamW (research/experiments.md).

Under FSDP2 a matrix is sharded by rows; its orthogonalisation needs the whole matrix, so the momentum is
gathered, orthogonalised on every rank alike, and each rank keeps its own rows.
"""

from __future__ import annotations

import math

import torch

# Coefficients of the quintic Newton-Schulz iteration from the Muon reference implementation.
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def is_muon_parameter(name: str, param: torch.Tensor) -> bool:
    """Hidden matrices: 2-D weights that are neither an embedding nor the output head."""
    return param.ndim == 2 and "embed" not in name and "lm_head" not in name


def orthogonalize(matrix: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately ``U V^T`` for ``matrix = U S V^T`` (singular values pushed into about [0.7, 1.2]).

    ``matrix``: (A, B) or a stack (N, A, B) of matrices orthogonalised independently (one batched call
    instead of N small ones: at the small model's widths a step is mostly per-call overhead)."""
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = matrix.float()
    transposed = x.shape[-2] > x.shape[-1]
    if transposed:  # iterate on the wide orientation: the Gram matrix is the smaller one
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT  # (..., rows, rows)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if transposed else x


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def _like(update: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``update`` (a whole matrix) laid out as ``reference``: this rank's shard of it under FSDP2."""
    if hasattr(reference, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(update, reference.device_mesh, reference.placements)
    return update


class MuonAdamW(torch.optim.Optimizer):
    """Parameter groups with ``muon: True`` take Muon steps, the others AdamW steps.

    Args:
        params: parameter groups (dicts); each may set ``muon`` (default False) and its own ``lr`` and
            ``weight_decay``.
        momentum: Muon's (Nesterov) momentum.
        betas, eps: AdamW's.
        ns_steps: Newton-Schulz iterations.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        ns_steps: int = 5,
    ):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Muon momentum (optim.muon_momentum) must be in [0, 1), got {momentum}")
        defaults = dict(
            lr=lr, weight_decay=weight_decay, momentum=momentum, betas=betas, eps=eps, ns_steps=ns_steps, muon=False
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["muon"]:
                self._muon_step(group)
            else:
                self._adamw_step(group)
        return loss

    def _muon_step(self, group: dict) -> None:
        lr, momentum = group["lr"], group["momentum"]
        by_shape: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for param in group["params"]:
            if param.grad is None:
                continue
            state = self.state[param]
            if not state:
                state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            buffer = state["momentum_buffer"]
            buffer.lerp_(param.grad, 1 - momentum)
            nesterov = _full(param.grad.lerp(buffer, momentum))
            by_shape.setdefault(tuple(nesterov.shape), []).append((param, nesterov))
        for (rows, cols), entries in by_shape.items():
            updates = orthogonalize(torch.stack([n for _, n in entries]), group["ns_steps"])  # (N, rows, cols)
            for (param, _), update in zip(entries, updates):
                param.mul_(1 - lr * group["weight_decay"])
                param.add_(_like(update.to(param.dtype), param), alpha=-lr * 0.2 * math.sqrt(max(rows, cols)))

    def _adamw_step(self, group: dict) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        for param in group["params"]:
            if param.grad is None:
                continue
            state = self.state[param]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["step"] += 1
            step = float(state["step"])
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(param.grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
            denominator = (exp_avg_sq / (1 - beta2**step)).sqrt_().add_(eps)
            param.mul_(1 - lr * group["weight_decay"])
            param.addcdiv_(exp_avg, denominator, value=-lr / (1 - beta1**step))
