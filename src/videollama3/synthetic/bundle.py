"""The bundled model as it ships: what training changed from the base LLM, assembled with it on first use.

The synthetic recipe trains a VideoLLaMA3 on SmolLM2-135M-Instruct (:mod:`.base_llm`): the vision encoder and
projector fully, the LLM through LoRA adapters that each stage merges. Shipping the whole checkpoint would
mean shipping the LLM again (540 MB in fp32), so the package holds only the *trained part*:

- ``trained_part.safetensors``: the encoder and projector weights (fp32); the embedding rows added for
  VideoLLaMA3's tokens (``model.embed_tokens.weight.added_rows``); for every LLM matrix the recipe changed,
  ``W_trained - W_base`` as two factors (``<name>.delta_up`` (out, r) @ ``<name>.delta_down`` (r, in), bf16),
  taken from its SVD at its rank (the sum of the stages' LoRA ranks, so nothing is lost but bf16 rounding);
  any other LLM tensor that changed, whole;
- ``trained_part.json``: the base it belongs to (the GGUF's sha256), the rank, and the sha256 of the weights;
- ``config.json``, ``generation_config.json`` and the processor and tokenizer files, as a checkpoint has them.

:func:`assemble` adds the part to the base and writes an ordinary checkpoint in the official layout to the
cache (``$VIDEOLLAMA3_CACHE``, see :func:`.base_llm.cache_root`), once; later calls return that folder. The
weights evaluated in ``docs/synthetic.md`` are the assembled ones: what users get.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from filelock import FileLock

from ..errors import CheckpointError
from ..hub import TRAINED_PART_INFO
from ..model.layouts import read_weights
from .base_llm import GGUF_SHA256, base_llm_dir, cache_root, file_sha256

PART_WEIGHTS = "trained_part.safetensors"
ADDED_ROWS = "model.embed_tokens.weight.added_rows"
UP, DOWN = ".delta_up", ".delta_down"
_COMPLETE = "videollama3_assembled.json"  # written last: a folder without it is incomplete
# Files of the trained folder copied as they are (everything but the weights).
_SKIP = (".safetensors", ".safetensors.index.json", TRAINED_PART_INFO, _COMPLETE)


def write_trained_part(
    trained_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    max_rank: int,
    base_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the trained part of the checkpoint ``trained_dir`` relative to the base LLM to ``output_dir``.

    Args:
        trained_dir: the recipe's final model (official layout).
        output_dir: where the part goes (replaced).
        max_rank: the rank of the LLM's change (the sum of the LoRA stages' ranks): a matrix whose change
            needs more is an error (it was trained fully, and would not be reproduced).
        base_dir: the base LLM checkpoint (default: :func:`.base_llm.base_llm_dir`).
    """
    from safetensors.torch import save_file

    trained_dir, output_dir = Path(trained_dir), Path(output_dir)
    base = read_weights(Path(base_dir) if base_dir is not None else base_llm_dir())
    trained = read_weights(trained_dir)
    part: dict[str, torch.Tensor] = {}
    for name, value in trained.items():
        value = value.float()
        if name not in base:
            if name == "lm_head.weight":
                raise CheckpointError(f"{trained_dir}: an untied LM head; the base LLM ties it to the embeddings")
            part[name] = value.contiguous()
            continue
        reference = base[name].float()
        if name == "model.embed_tokens.weight":
            if not torch.equal(value[: reference.shape[0]], reference):
                raise CheckpointError(
                    f"{trained_dir}: the base LLM's embedding rows changed (LoRA does not change them)"
                )
            part[ADDED_ROWS] = value[reference.shape[0] :].contiguous()
            continue
        delta = value - reference
        if not delta.any():
            continue
        if delta.dim() != 2:
            part[name] = value.contiguous()
            continue
        u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
        rank = min(max_rank, int((s > s[0] * 1e-6).sum()))
        # Beyond the LoRA ranks only the rounding of the fp32 merges remains; more means a full update.
        lost = float(s[rank:].square().sum().sqrt() / s.square().sum().sqrt())
        if lost > 1e-3:
            raise CheckpointError(
                f"{trained_dir}: {name} changed with rank > {max_rank} ({lost:.1e} of it beyond; trained fully?)"
            )
        scale = s[:rank].sqrt()
        part[name + UP] = (u[:, :rank] * scale).to(torch.bfloat16).contiguous()  # (out, r)
        part[name + DOWN] = (scale[:, None] * vh[:rank]).to(torch.bfloat16).contiguous()  # (r, in)
    with tempfile.TemporaryDirectory(dir=output_dir.parent, prefix=f".{output_dir.name}-") as tmp:
        tmp = Path(tmp)
        save_file(part, str(tmp / PART_WEIGHTS), metadata={"format": "pt"})
        for file in trained_dir.iterdir():
            if file.is_file() and not file.name.endswith(_SKIP):
                shutil.copy2(file, tmp / file.name)
        info = {"base_gguf_sha256": GGUF_SHA256, "max_rank": max_rank, "sha256": file_sha256(tmp / PART_WEIGHTS)}
        (tmp / TRAINED_PART_INFO).write_text(json.dumps(info, indent=2) + "\n")
        shutil.rmtree(output_dir, ignore_errors=True)
        os.replace(tmp, output_dir)
        tmp.mkdir()  # TemporaryDirectory removes it again on exit
    return output_dir


def assemble(
    part_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None, base_dir: str | os.PathLike | None = None
) -> Path:
    """The checkpoint folder of base LLM + trained part (built once, in the cache unless ``output_dir``).

    ``base_dir``: the base LLM checkpoint (default: :func:`.base_llm.base_llm_dir`, checked by the GGUF's sha256)."""
    part_dir = Path(part_dir)
    info_file = part_dir / TRAINED_PART_INFO
    if not info_file.is_file():
        raise CheckpointError(
            f"{part_dir}: no {TRAINED_PART_INFO} (not a trained part written by the synthetic recipe)"
        )
    info = json.loads(info_file.read_text())
    if base_dir is None and info.get("base_gguf_sha256") != GGUF_SHA256:
        raise CheckpointError(f"{info_file}: trained on another base LLM ({info.get('base_gguf_sha256')})")
    folder = Path(output_dir) if output_dir is not None else cache_root() / "assembled" / info["sha256"][:16]
    if (folder / _COMPLETE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):  # one builder at a time (processes of a job, test workers)
        if not (folder / _COMPLETE).is_file():
            _assemble(part_dir, folder, info, Path(base_dir) if base_dir is not None else base_llm_dir())
    return folder


def _assemble(part_dir: Path, folder: Path, info: dict, base_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = read_weights(base_dir)
    part = load_file(str(part_dir / PART_WEIGHTS))
    for name, value in part.items():
        if name == ADDED_ROWS:
            embed = weights["model.embed_tokens.weight"]
            weights["model.embed_tokens.weight"] = torch.cat([embed, value.to(embed.dtype)])
        elif name.endswith(UP):
            target = name.removesuffix(UP)
            down = part[target + DOWN].float()
            weights[target] = weights[target] + value.float() @ down
        elif not name.endswith(DOWN):
            weights[name] = value
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as tmp:
        tmp = Path(tmp)
        save_file(
            {k: v.contiguous() for k, v in weights.items()}, str(tmp / "model.safetensors"), metadata={"format": "pt"}
        )
        for file in part_dir.iterdir():
            if file.is_file() and not file.name.endswith(_SKIP):
                shutil.copy2(file, tmp / file.name)
        (tmp / _COMPLETE).write_text(json.dumps({"trained_part": str(part_dir), **info}, indent=2) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        tmp.mkdir()
