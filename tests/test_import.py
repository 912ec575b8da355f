"""``import videollama3`` and ``videollama3 --help`` stay cheap; the Auto classes still find our model."""

from __future__ import annotations

import subprocess
import sys

from parity_fixtures import FIXTURE_MODEL


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_import_loads_neither_torch_nor_transformers():
    loaded = _python("import sys, videollama3; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    assert loaded == "[]"


def test_help_lists_every_command_without_importing_them():
    code = (
        "import sys\n"
        "from videollama3.cli import SUBCOMMANDS, main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, all(m not in sys.modules for m, _ in SUBCOMMANDS.values()))"
    )
    out = _python(code)
    assert out.endswith("False True"), out


def test_public_names_resolve_on_first_use():
    out = _python("import videollama3; print(videollama3.VideoLLaMA3ForCausalLM.__name__, videollama3.InputError.__name__)")
    assert out == "VideoLLaMA3ForCausalLM InputError"


def test_readme_snippet_auto_classes_find_videollama3_whatever_the_import_order():
    orders = (
        ("import videollama3", "import transformers"),
        ("import transformers", "import videollama3"),
        ("import videollama3.model.vision_encoder", "import videollama3.processing"),  # ours imports transformers
        ("import transformers.models.qwen2.modeling_qwen2", "import videollama3.model.modeling"),
        ("from transformers import AutoModelForCausalLM", "import videollama3.serving.engine"),
    )
    for first, second in orders:
        code = (
            f"{first}\n{second}\n"
            "from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor\n"
            f"path = {str(FIXTURE_MODEL)!r}\n"
            "model = AutoModelForCausalLM.from_pretrained(path)\n"
            "processor = AutoProcessor.from_pretrained(path)\n"
            "print(type(AutoConfig.from_pretrained(path)).__name__, type(model).__name__,"
            " type(processor).__mro__[1].__name__)"
        )
        assert _python(code) == "VideoLLaMA3Config VideoLLaMA3ForCausalLM VideoLLaMA3Processor", first
