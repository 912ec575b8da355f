"""Muon for hidden matrices, AdamW for the rest, in one optimizer (``optim.optimizer: muon``)."""

from __future__ import annotations

import pytest
import torch

from videollama3.training.muon import MuonAdamW, is_muon_parameter, orthogonalize
from videollama3.training.optim import apply_trainability, build_optimizer, parameter_groups
from videollama3.training.recipe import LearningRates, OptimConfig


def test_adamw_groups_step_exactly_as_torch_adamw():
    torch.manual_seed(0)
    ours, theirs = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    theirs.load_state_dict(ours.state_dict())
    reference = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.1)
    optimizer = MuonAdamW([{"params": list(ours.parameters()), "weight_decay": 0.1}], lr=1e-2)
    for _ in range(5):
        x = torch.randn(3, 8)
        for module, opt in ((ours, optimizer), (theirs, reference)):
            module(x).pow(2).sum().backward()
            opt.step()
            opt.zero_grad()
    torch.testing.assert_close(ours.weight, theirs.weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.bias, theirs.bias, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(64, 192), (192, 64), (32, 32)])
def test_orthogonalize_flattens_the_spectrum(shape):
    torch.manual_seed(0)
    matrix = torch.randn(*shape) @ torch.diag(torch.logspace(-1, 0, shape[1]))
    assert torch.linalg.svdvals(matrix).max() > 5 * torch.linalg.svdvals(matrix).min()
    singular = torch.linalg.svdvals(orthogonalize(matrix))
    assert orthogonalize(matrix).shape == shape
    assert singular.max() < 1.2 and singular.min() > 0.6  # Newton-Schulz's band around one


def test_muon_update_has_adamw_rms_and_ignores_the_gradient_scale():
    torch.manual_seed(0)
    weights = []
    for scale in (1.0, 1e-3):
        param = torch.nn.Parameter(torch.zeros(64, 192))
        optimizer = MuonAdamW([{"params": [param], "muon": True}], lr=1e-2)
        torch.manual_seed(1)
        param.grad = scale * torch.randn(64, 192)
        optimizer.step()
        weights.append(param.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-3, atol=1e-6)
    rms = weights[0].pow(2).mean().sqrt().item()
    assert 0.1 * 1e-2 < rms < 0.3 * 1e-2  # 0.2 * lr: AdamW's typical update RMS


def test_muon_groups_hold_the_hidden_matrices_only(fixture_model):
    model = fixture_model
    config = OptimConfig(lr=LearningRates(1e-3, 1e-3, 1e-4), optimizer="muon", weight_decay=0.1)
    apply_trainability(model, config.lr)
    groups = parameter_groups(model, config)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in groups if g["muon"] for p in g["params"]}
    others = {names[id(p)] for g in groups if not g["muon"] for p in g["params"]}
    assert "model.layers.0.self_attn.q_proj.weight" in muon
    assert "model.mm_projector.readout.0.weight" in muon
    assert "model.vision_encoder.encoder.layers.0.mlp.fc1.weight" in muon
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"} <= others
    assert not any(n.endswith(".bias") for n in muon)
    assert all(is_muon_parameter(n, dict(model.named_parameters())[n]) for n in muon)
    assert {g["module_group"] for g in groups if g["muon"]} == {"llm", "projector", "vision_encoder"}
    assert isinstance(build_optimizer(model, config), MuonAdamW)
    adamw_groups = parameter_groups(model, OptimConfig(lr=config.lr))
    assert not any("muon" in g for g in adamw_groups)  # plain AdamW: unchanged groups


def test_momentum_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="muon_momentum"):
        MuonAdamW([torch.nn.Parameter(torch.zeros(2, 2))], momentum=1.0)


def test_stacked_matrices_are_orthogonalized_one_by_one():
    torch.manual_seed(0)
    stack = torch.randn(3, 48, 20)
    batched = orthogonalize(stack)
    for matrix, result in zip(stack, batched):
        torch.testing.assert_close(result, orthogonalize(matrix), rtol=1e-4, atol=1e-5)


def test_muon_step_of_several_matrices_matches_one_matrix_at_a_time():
    torch.manual_seed(0)
    shapes = [(16, 24), (16, 24), (24, 16), (8, 8)]
    grads = [torch.randn(*s) for s in shapes]
    together = [torch.nn.Parameter(torch.zeros(*s)) for s in shapes]
    alone = [torch.nn.Parameter(torch.zeros(*s)) for s in shapes]
    optimizers = [MuonAdamW([{"params": [p], "muon": True}], lr=1e-2) for p in alone]
    joint = MuonAdamW([{"params": together, "muon": True}], lr=1e-2)
    for step in range(3):
        for p, q, g in zip(together, alone, grads):
            p.grad, q.grad = g * (step + 1), g * (step + 1)
        joint.step()
        for opt in optimizers:
            opt.step()
    for p, q in zip(together, alone):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
