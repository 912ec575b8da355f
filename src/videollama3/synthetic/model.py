"""The small model of the synthetic world: its tokenizer and its randomly initialised starting checkpoint.

:func:`build_tokenizer` trains a byte-level BPE (Qwen2.5's normalizer and pre-tokenizer, so any text is
encodable and every transformers version tokenizes it the same) on text of the synthetic world, then adds
Qwen's special tokens and VideoLLaMA3's (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, ``<image>``,
``<|stream_start|>``, ``<|stream_end|>``) after the learned vocabulary, as Qwen does. The files are those
of a released VideoLLaMA3 checkpoint (``tokenizer.json``, ``vocab.json``, ``merges.txt``,
``tokenizer_config.json`` with the official chat template, ``special_tokens_map.json``,
``added_tokens.json``).

:func:`build_initial_model` writes a complete VideoLLaMA3 checkpoint folder (official layout: config,
random weights, tokenizer, ``preprocessor_config.json``, ``processor_config.json``,
``generation_config.json``): the ``init.checkpoint`` of the ``synthetic`` training recipe.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<|stream_start|>", "<|stream_end|>")
# Qwen2.5's pre-tokenizer split: contractions, words with one leading non-letter, single digits, punctuation runs.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CHAT_TEMPLATE_SOURCE = "the official VideoLLaMA3 chat template"
DEFAULT_BPE_VOCAB = 1018  # + 6 special tokens = 1024


@dataclass
class ModelSize:
    """Widths of the small model (a Qwen2 LLM and a SigLIP-style encoder with 14-pixel patches)."""

    hidden_size: int = 192
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 6
    num_key_value_heads: int = 2
    vision_hidden_size: int = 128
    vision_intermediate_size: int = 384
    vision_num_hidden_layers: int = 4
    vision_num_attention_heads: int = 4
    max_position_embeddings: int = 4096
    # Standard deviation of the LLM's and projector's random weights (the encoder keeps 0.02). Larger than
    # the usual 0.02: at 0.02 this LLM stays at chance on in-context lookup ("which option says green?")
    # for 600+ steps, at 0.1 it learns it within a few hundred (research/experiments.md).
    initializer_range: float = 0.1


# ---------------------------------------------------------------------------------------------- text corpus
INFO_FILE = "synthetic_model.json"  # how an initial model was built (size, seed, perception)


def corpus(seed: int = 0, images: int = 3000, videos: int = 1500, texts: int = 1500) -> Iterator[str]:
    """Text of the synthetic world (captions, questions with their options, answers, text-only data and
    the chat template's fixed strings), without rendering any pixels."""
    from ..processing.chat_template import DEFAULT_SYSTEM_PROMPT
    from . import tasks, world

    yield DEFAULT_SYSTEM_PROMPT
    for _ in range(50):  # the chat template's own strings, so that they are single tokens too
        yield "system\nuser\nassistant\n" + ",".join(f"Time {t}.0s:" for t in range(0, 60))
    for i in range(images):
        scene = world.sample_image_scene(seed, i)
        yield tasks.image_caption(scene)
        rng = tasks.qa_rng(seed, i, 0)
        for qa in tasks.image_questions(scene, rng):
            yield qa.prompt + "\n" + qa.answer
    for i in range(videos):
        scene = world.sample_video_scene(seed, i)
        yield tasks.video_caption(scene)
        rng = tasks.qa_rng(seed, i, 1)
        for qa in tasks.video_questions(scene, rng):
            yield qa.prompt + "\n" + qa.answer
    for i in range(texts):
        for qa in tasks.text_conversation(seed, i, turns=10):
            yield qa.prompt + "\n" + qa.answer


# ---------------------------------------------------------------------------------------------- tokenizer
def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_BPE_VOCAB):
    """A ``tokenizers.Tokenizer``: byte-level BPE on ``texts`` plus the special tokens (ids after the BPE's)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in SPECIAL_TOKENS]
    )
    return tokenizer


def chat_template() -> str:
    """The official VideoLLaMA3 chat template (Jinja), as released checkpoints carry it."""
    return (Path(__file__).with_name("chat_template.jinja")).read_text()


def write_tokenizer(tokenizer, folder: str | os.PathLike) -> dict[str, int]:
    """Write the tokenizer files of a VideoLLaMA3 checkpoint; returns the special token ids."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    model = json.loads(tokenizer.to_str())["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False) + "\n")
    merges = ["#version: 0.2"] + [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    flags = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(ids[t]): {"content": t, **flags, "special": True} for t in SPECIAL_TOKENS},
        "additional_special_tokens": list(SPECIAL_TOKENS),
        "bos_token": None,
        "chat_template": chat_template(),
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    special_map = {
        "additional_special_tokens": [{"content": t, **flags} for t in SPECIAL_TOKENS],
        "eos_token": {"content": "<|im_end|>", **flags},
        "pad_token": {"content": "<|endoftext|>", **flags},
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
    (folder / "added_tokens.json").write_text(json.dumps(ids, indent=2, sort_keys=True) + "\n")
    return ids


def build_tokenizer(
    folder: str | os.PathLike, seed: int = 0, vocab_size: int = DEFAULT_BPE_VOCAB, corpus_scale: float = 1.0
) -> dict[str, int]:
    """Train the synthetic world's tokenizer on :func:`corpus` and write its files to ``folder``.

    ``corpus_scale`` < 1 trains on proportionally fewer items (faster; for tests)."""
    n = {k: max(1, int(v * corpus_scale)) for k, v in {"images": 3000, "videos": 1500, "texts": 1500}.items()}
    return write_tokenizer(train_tokenizer(corpus(seed, **n), vocab_size), folder)


# ---------------------------------------------------------------------------------------------- model
def processor_files(folder: str | os.PathLike, max_frames: int = 32, max_tokens: int = 4096) -> None:
    """``preprocessor_config.json`` and ``processor_config.json``: the released ones with smaller budgets, and
    images merged 2 x 2 like video frames (as the paper's stage 4 does), down to 4 tokens, so that an 84 x 84
    picture of the world is 3 x 3 tokens, one per cell of its grid."""
    folder = Path(folder)
    preprocessor = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "Videollama3ImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "max_tokens": max_tokens,
        "min_tokens": 4,
        "patch_size": 14,
        "resample": 3,
        "rescale_factor": 1 / 255,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    processor = {
        "processor_class": "Videollama3Qwen2Processor",
        "image_merge_size": 2,
        "video_merge_size": 2,
        "fps": 1,
        "max_frames": max_frames,
    }
    (folder / "processor_config.json").write_text(json.dumps(processor, indent=2) + "\n")


def model_config(size: ModelSize, special_ids: dict[str, int], vocab_size: int):
    """The :class:`~videollama3.VideoLLaMA3Config` of the small model."""
    from ..model.configuration import VideoLLaMA3Config

    return VideoLLaMA3Config(
        vocab_size=vocab_size,
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_key_value_heads,
        max_position_embeddings=size.max_position_embeddings,
        hidden_act="silu",
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        use_sliding_window=False,
        initializer_range=size.initializer_range,
        bos_token_id=None,
        eos_token_id=special_ids["<|im_end|>"],
        pad_token_id=special_ids["<|endoftext|>"],
        vision_encoder_config={
            "hidden_size": size.vision_hidden_size,
            "intermediate_size": size.vision_intermediate_size,
            "num_hidden_layers": size.vision_num_hidden_layers,
            "num_attention_heads": size.vision_num_attention_heads,
            "patch_size": 14,
            "initializer_range": 0.02,
        },
        mm_projector_type="mlp2x_gelu",
        use_token_compression=True,
        image_token_index=special_ids["<image>"],
    )


def build_initial_model(
    folder: str | os.PathLike,
    size: ModelSize | None = None,
    seed: int = 0,
    tokenizer_from: str | os.PathLike | None = None,
    corpus_scale: float = 1.0,
    perception_steps: int = 0,
    perception_precision: str = "fp32",
) -> Path:
    """Write the small VideoLLaMA3 checkpoint training starts from (fp32), with its tokenizer and processor files:
    a random LLM and projector, and a vision encoder that is random or, with ``perception_steps``, pretrained
    to see the world first (:mod:`~videollama3.synthetic.perception`, the stand-in for SigLIP).

    Args:
        folder: output folder.
        size: the widths (default :class:`ModelSize`).
        seed: seed of the tokenizer's corpus and of the weights.
        tokenizer_from: a folder whose tokenizer files to reuse instead of training a new tokenizer.
        corpus_scale: fraction of the default tokenizer corpus to train on (when training one).
        perception_steps: steps of perception pretraining of the encoder (0: leave it random).
        perception_precision: "fp32", or "bf16" for bf16 autocast with fp32 weights (faster on most CPUs).
    """
    import shutil

    import torch

    from ..model.modeling import VideoLLaMA3ForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    size = size or ModelSize()
    if tokenizer_from is not None:
        names = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
        for name in (*names, "added_tokens.json"):
            shutil.copy2(Path(tokenizer_from) / name, folder / name)
        special_ids = json.loads((folder / "added_tokens.json").read_text())
    else:
        special_ids = build_tokenizer(folder, seed=seed, corpus_scale=corpus_scale)
    n_tokens = max(special_ids.values()) + 1
    vocab_size = -(-n_tokens // 64) * 64  # padded to a multiple of 64, as released models are
    config = model_config(size, special_ids, vocab_size)
    torch.manual_seed(seed)
    model = VideoLLaMA3ForCausalLM(config)
    model.generation_config.eos_token_id = special_ids["<|im_end|>"]
    model.generation_config.pad_token_id = special_ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    processor_files(folder)
    info = {"size": asdict(size), "seed": seed, "perception_steps": perception_steps}
    if perception_steps:
        info["perception_precision"] = perception_precision
        from ..processing import VideoLLaMA3Processor
        from .perception import pretrain_encoder

        info["perception_accuracy"] = pretrain_encoder(
            model,
            VideoLLaMA3Processor.from_pretrained(folder),
            steps=perception_steps,
            seed=seed,
            precision=perception_precision,
        )
    model.save_pretrained(folder)
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return folder


def initial_model_mismatch(
    folder: str | os.PathLike,
    seed: int = 0,
    perception_steps: int = 0,
    perception_precision: str = "fp32",
    base_llm: str | None = None,
) -> str | None:
    """Why the initial model already in ``folder`` is not the one :func:`build_initial_model` would write
    with these arguments (``None``: it is, or there is none)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return None
    if not (folder / INFO_FILE).is_file():
        return f"it has no {INFO_FILE}, so how it was built is unknown"
    info = json.loads((folder / INFO_FILE).read_text())
    built = {
        "seed": info.get("seed"),
        "perception_steps": info.get("perception_steps"),
        "base_llm": "smollm2" if info.get("base_llm") else None,
    }
    wanted = {"seed": seed, "perception_steps": perception_steps, "base_llm": base_llm}
    if perception_steps:  # written since bf16 became an option; fp32 before
        built["perception_precision"] = info.get("perception_precision", "fp32")
        wanted["perception_precision"] = perception_precision
    differing = [f"{key} {built[key]!r} vs {value!r}" for key, value in wanted.items() if built[key] != value]
    return "it was built with " + ", ".join(differing) if differing else None


def build_initial_model_on_base(
    folder: str | os.PathLike,
    seed: int = 0,
    perception_steps: int = 0,
    perception_precision: str = "fp32",
    base_dir: str | os.PathLike | None = None,
) -> Path:
    """The initial checkpoint of the synthetic recipe on a pretrained LLM, as the paper builds its models:
    SmolLM2-135M-Instruct (:func:`~videollama3.synthetic.base_llm.base_llm_dir`), with the new token rows
    (``<image>``, ``<|stream_start|>``, ``<|stream_end|>``), the small encoder (perception-pretrained with
    ``perception_steps``), a random projector, the world's processor files and the official chat template.
    """
    import tempfile

    import torch

    from ..training.initialize import build_initial_checkpoint
    from .base_llm import base_llm_dir

    folder = Path(folder)
    base = Path(base_dir) if base_dir is not None else base_llm_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".encoder-") as tmp:
        # The encoder's perception pretraining needs only a processor that merges the world's pictures 2 x 2.
        encoder_model = build_initial_model(
            Path(tmp) / "encoder",
            seed=seed,
            corpus_scale=0.02,
            perception_steps=perception_steps,
            perception_precision=perception_precision,
        )
        info = json.loads((encoder_model / INFO_FILE).read_text())
        build_initial_checkpoint(base, encoder_model, folder, dtype=torch.float32, seed=seed)
    processor_files(folder)
    llm_config = json.loads((base / "config.json").read_text())
    generation = {  # greedy, ending at <|im_end|> (SmolLM2-Instruct's end of turn), as the world's model does
        "bos_token_id": llm_config.get("bos_token_id"),
        "eos_token_id": llm_config["eos_token_id"],
        "pad_token_id": llm_config["pad_token_id"],
        "do_sample": False,
    }
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    config_file = folder / "tokenizer_config.json"
    tokenizer_config = json.loads(config_file.read_text())
    tokenizer_config["chat_template"] = chat_template()
    config_file.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n")
    for stray in ("chat_template.jinja", "chat_template.json"):  # the LLM's own template would win over ours
        (folder / stray).unlink(missing_ok=True)
    base_info = json.loads((base / "videollama3_base.json").read_text())
    info.update({"base_llm": base_info, "size": None})
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return folder
