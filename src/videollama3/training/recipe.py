"""Training recipes: typed dataclasses loaded from YAML, with ``--set key=value`` overrides.

A recipe is a list of *stages* that run back to back, each starting from the previous stage's output
(VideoLLaMA3's four stages: vision encoder adaptation, vision-language alignment, multi-task fine-tuning,
video-centric fine-tuning). The YAML file has a ``defaults`` block merged under every stage, so a stage
only states what differs::

    name: videollama3-2b
    output_dir: work_dirs/videollama3-2b
    init: {llm: Qwen/Qwen2.5-1.5B-Instruct, vision_encoder: google/siglip-so400m-patch14-384}
    defaults:
      optim: {lr: {llm: 1.0e-5, projector: 1.0e-5, vision_encoder: 2.0e-6}, warmup_ratio: 0.03}
    stages:
      - name: stage1
        optim: {lr: {llm: null, projector: 1.0e-3, vision_encoder: 1.0e-5}}   # null = frozen

Overrides are dotted paths: ``train.max_steps=10`` sets the field in every stage, ``stage2.optim.lr.llm=2e-5``
in one stage, ``output_dir=/tmp/run`` at the top level. Values are parsed as YAML (``null``, ``true``,
``[a, b]``); numbers written as ``1e-5`` are accepted for float fields (PyYAML would read them as strings).
Unknown keys are errors, so a typo never silently falls back to a default. Strings may use
``${output_dir}`` and ``${name}`` (after overrides), e.g. ``path: ${output_dir}/synthetic/data/text.jsonl``.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError

MODULE_GROUPS = ("llm", "projector", "vision_encoder")


# --------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------


@dataclass
class SourceConfig:
    """One annotation file (official format, ``.json`` list or ``.jsonl``).

    Args:
        path: the annotation file.
        data_folder: folder that media paths are relative to (default: ``data.data_folder``, else the
            annotation file's folder).
        weight: how many times each sample is seen per epoch (2.0 = twice, 0.25 = a random quarter,
            drawn anew every epoch).
        name: shown in logs and in the bad-sample summary (default: the file name).
    """

    path: str
    data_folder: str | None = None
    weight: float = 1.0
    name: str | None = None


@dataclass
class DataConfig:
    """Samples, and how they become model inputs (the processor's settings for this stage)."""

    sources: list[SourceConfig] = field(default_factory=list)
    data_folder: str | None = None
    model_max_length: int = 16384  # tokens per sample (text + visual), after the visual budget
    mm_max_length: int = 10240  # visual-token budget per sample: the processor's ``max_tokens``
    fps: float = 1.0
    max_frames: int = 180
    image_merge_size: int = 1  # 2 in stage 4 only
    video_merge_size: int = 2
    use_token_compression: bool = False  # Differential Frame Pruner (stages 3 and 4)
    add_system_prompt: bool = False  # the official training renders no default system message
    # streaming records: also supervise the token after each frame that says "stay silent" or "speak"
    # (the inference copy's labelling; docs/streaming.md). False: the official training labels exactly.
    stream_turn_labels: bool = False
    num_workers: int = 4  # DataLoader worker processes (0 = load in the training process)
    prefetch_factor: int = 4  # samples each worker prepares ahead
    max_bad_fraction: float = 0.05  # stop the run when more of the samples seen so far are unusable


@dataclass
class LearningRates:
    """Peak learning rate per module group; ``None`` freezes the group."""

    llm: float | None = 1e-5  # decoder layers, embeddings, final norm and the LM head (tied or not)
    projector: float | None = 1e-5
    vision_encoder: float | None = 2e-6

    def as_dict(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in MODULE_GROUPS}


@dataclass
class OptimConfig:
    lr: LearningRates = field(default_factory=LearningRates)
    # "muon": Muon for the hidden matrices (at the same rates: its update RMS is matched to AdamW's),
    # AdamW for embeddings, the output head, norms and biases
    optimizer: Literal["adamw", "muon"] = "adamw"
    muon_momentum: float = 0.95
    weight_decay: float = 0.0  # never applied to norms and biases
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_ratio: float = 0.03
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.0  # the schedule's floor, as a fraction of the peak
    max_grad_norm: float | None = 1.0  # global gradient-norm clipping (None: off)


@dataclass
class TrainConfig:
    """Batching, precision, checkpoints and logging of one stage."""

    global_batch_size: int = 128  # samples per optimizer step, over all ranks and micro-batches
    packing: bool = True  # pack samples into micro-batches of ``micro_batch_tokens``
    micro_batch_tokens: int = 16384  # per micro-batch and rank: packed tokens, or padded positions (no packing)
    micro_batch_size: int = 1  # at most this many samples per padded micro-batch when packing is off
    epochs: float = 1.0
    max_steps: int | None = None  # stop earlier (the schedule still spans ``max_steps``)
    precision: Literal["bf16", "fp32"] = "bf16"
    gradient_checkpointing: bool = True
    attn_implementation: str = "sdpa"  # the LLM's: "sdpa", "flash_attention_2", "flex_attention"
    fsdp: Literal["auto", "on", "off"] = "auto"  # auto: FSDP2 when more than one process
    save_steps: int = 1000
    keep_last: int = 2  # intermediate checkpoints kept (the final model is always written)
    save_dtype: Literal["bf16", "fp32"] = "bf16"  # dtype of the final model's weights
    resume: str | None = "auto"  # "auto": latest checkpoint of the stage if any; a path; None: start over
    log_steps: int = 1
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # also "wandb"
    peak_tflops: float | None = None  # per device, for MFU (default: known GPUs; CPU: not shown)
    progress_bar: bool = True


@dataclass
class LoraSettings:
    """LoRA / QLoRA fine-tuning (PEFT). Groups with a learning rate and no adapters train fully."""

    enabled: bool = False
    r: int = 64
    alpha: int = 128
    dropout: float = 0.05
    targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )  # linear layers of the LLM's decoder layers
    vision_encoder: bool = False  # adapters on the vision encoder's attention and MLP too
    vision_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])
    quantize: Literal["4bit", "8bit"] | None = None  # QLoRA: base LLM weights in bitsandbytes 4/8 bit (CUDA)
    merge_on_save: bool = False  # write the merged model as the stage output instead of the adapters


@dataclass
class InitConfig:
    """Where a stage's weights come from.

    Either ``checkpoint`` (a VideoLLaMA3 checkpoint: folder or hub name), or ``llm`` + ``vision_encoder``
    to assemble a new model (stage 1): a Qwen2 / Qwen2.5 LLM folder and a vision encoder, which may be
    SigLIP (``google/siglip-so400m-patch14-384``: its learned position embedding and pooling head are
    dropped), ``DAMO-NLP-SG/VL3-SigLIP-NaViT``, or a VideoLLaMA3 checkpoint (its tuned encoder).
    A stage without ``init`` starts from the previous stage's output.
    """

    checkpoint: str | None = None
    llm: str | None = None
    vision_encoder: str | None = None
    projector_type: str = "mlp2x_gelu"
    processor: str | None = None  # VideoLLaMA3 folder / hub name whose tokenizer and processor files to use


@dataclass
class WorldConfig:
    """Write the synthetic world (:mod:`videollama3.synthetic`) before training, unless it is there: its training
    data in ``data_dir`` and what training starts from in ``init_dir``.

    ``size: full`` (the ``synthetic`` recipe): the world's scenes, rendered by
    :func:`videollama3.synthetic.writer.write_dataset` (``images``, ``videos``, ``texts``, ``questions``), and
    the small model's initial VideoLLaMA3 checkpoint (:func:`videollama3.synthetic.model.build_initial_model`;
    ``perception_*``). Data or a model written by another generator or with other settings stops the run.

    ``size: tiny`` (the ``tiny`` recipe, CPU demos): :func:`videollama3.synthetic.tiny.write_tiny_world`, data of
    ``samples`` items per annotation file, and base parts for stage 1 to assemble: ``init_dir/llm`` (Qwen2) and
    ``init_dir/siglip``.
    """

    data_dir: str
    init_dir: str
    size: Literal["full", "tiny"] = "full"
    seed: int = 0
    images: int = 8000
    videos: int = 4000
    texts: int = 4000
    questions: int = 8
    perception_steps: int = 0  # perception pretraining of the initial model's encoder (0: random encoder)
    perception_precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast, fp32 weights
    base_llm: Literal["smollm2"] | None = None  # a pretrained LLM (synthetic.base_llm) instead of a random one
    samples: int = 48  # tiny: items per annotation file (captions, VQA with multi-image, video, text-only)


# Fields of ``world`` that only one size reads (setting one for the other size is an error).
WORLD_SIZE_FIELDS = {
    "full": ("images", "videos", "texts", "questions", "perception_steps", "perception_precision", "base_llm"),
    "tiny": ("samples",),
}


@dataclass
class StageConfig:
    name: str
    init: InitConfig | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)


@dataclass
class Recipe:
    name: str
    output_dir: str
    stages: list[StageConfig]
    seed: int = 42
    init: InitConfig | None = None  # stage 1's starting point (a stage's own ``init`` wins)
    world: WorldConfig | None = None  # the synthetic world to write before training
    export_dir: str | None = None  # the last stage's final model is also copied here (e.g. the bundled model)
    # "checkpoint": a copy of the final model; "trained-part": what training changed from world.base_llm
    # (videollama3.synthetic.bundle), which is assembled with the base on first use
    export_format: Literal["checkpoint", "trained-part"] = "checkpoint"
    source: str | None = None  # where the recipe was read from (informational)

    def stage_dir(self, stage: StageConfig | str) -> Path:
        name = stage if isinstance(stage, str) else stage.name
        return Path(self.output_dir) / name

    def stage_output(self, stage: StageConfig | str) -> Path:
        """The final model of a stage, in the official layout with the processor files."""
        return self.stage_dir(stage) / "final"

    def stage_init(self, index: int) -> InitConfig:
        """What stage ``index`` starts from: its own ``init``, else the previous stage's output."""
        stage = self.stages[index]
        if stage.init is not None:
            return stage.init
        if index == 0:
            if self.init is None:
                raise ConfigError(f"recipe {self.name!r}: the first stage needs an `init` (or a top-level `init`)")
            return self.init
        return InitConfig(checkpoint=str(self.stage_output(self.stages[index - 1])))

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data (``videollama3 train --print``); ``world`` without the other size's fields."""
        out = dataclasses.asdict(self)
        if self.world is not None:
            for name in WORLD_SIZE_FIELDS["tiny" if self.world.size == "full" else "full"]:
                del out["world"][name]
        return out


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

_TOP_LEVEL = {f.name for f in dataclasses.fields(Recipe)} | {"defaults"}
# Top-level keys of earlier releases: what replaced them.
_RENAMED = {
    "synthetic": "`synthetic:` is now `world:` with `size: tiny` (`num_samples` is `world.samples`; give "
    "`data_dir` and `init_dir`, as the packaged `tiny` recipe does)",
}


def packaged_recipes() -> list[str]:
    """Names of the recipes shipped with the package (``videollama3 train NAME``)."""
    folder = resources.files("videollama3") / "recipes"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    packaged = resources.files("videollama3") / "recipes" / f"{name_or_path}.yaml"
    if packaged.is_file():
        return Path(str(packaged))
    raise ConfigError(
        f"{name_or_path}: no such recipe file, and not a packaged recipe ({', '.join(packaged_recipes())})"
    )


def load_recipe(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe (a YAML path or a packaged recipe name) and apply ``key=value`` overrides."""
    import yaml

    path = resolve_recipe_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    recipe = recipe_from_dict(raw, overrides, where=str(path))
    recipe.source = str(path)
    return recipe


def recipe_from_dict(raw: Any, overrides: list[str] | tuple[str, ...] = (), where: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from its YAML dict: merge ``defaults`` into stages, apply overrides, type-check."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a recipe must be a mapping, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    renamed = sorted(set(raw) & set(_RENAMED))
    if renamed:
        raise ConfigError(f"{where}: {_RENAMED[renamed[0]]}")
    unknown = set(raw) - _TOP_LEVEL
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {sorted(unknown)}; known: {sorted(_TOP_LEVEL)}")
    defaults = raw.pop("defaults", None) or {}
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{where}: `stages` must be a non-empty list")
    merged = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or "name" not in stage:
            raise ConfigError(f"{where}: stages[{i}] must be a mapping with a `name`")
        merged.append(_deep_merge(defaults, stage))
    names = [s["name"] for s in merged]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: stage names must be unique, got {names}")
    raw["stages"] = merged

    for override in overrides:
        key, value = parse_override(override)
        parts = key.split(".")
        if parts[0] in _RENAMED:
            raise ConfigError(f"--set {override}: {_RENAMED[parts[0]]}")
        if parts[0] in names:
            targets = [merged[names.index(parts[0])]]
            parts = parts[1:]
        elif parts[0] in _TOP_LEVEL:
            targets = [raw]
        else:  # a stage field: every stage
            targets = merged
        if not parts:
            raise ConfigError(f"--set {override}: give a field of stage {key!r}, e.g. {key}.train.max_steps=10")
        for target in targets:
            _set_path(target, parts, value, override)
    variables = {"output_dir": raw.get("output_dir"), "name": raw.get("name")}
    if isinstance(variables["output_dir"], str):
        variables["output_dir"] = variables["output_dir"].replace("${name}", str(variables["name"]))
    recipe = _build(Recipe, _interpolate(raw, variables), where)
    if recipe.world is not None:
        _check_world_fields(raw["world"], recipe.world.size, where)
    if recipe.export_format == "trained-part" and (recipe.world is None or recipe.world.base_llm is None):
        raise ConfigError(f"{where}: export_format trained-part needs world.base_llm (the base it is a part of)")
    return recipe


def _check_world_fields(world: dict, size: str, where: str) -> None:
    """A ``world`` field that its size does not read is a mistake (it would be silently ignored)."""
    other = "tiny" if size == "full" else "full"
    ignored = [name for name in WORLD_SIZE_FIELDS[other] if name in world]
    if ignored:
        raise ConfigError(f"{where}: world.{ignored[0]} applies to `size: {other}` only; this world is `size: {size}`")


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=1e-5"`` -> ``("a.b", "1e-5")`` with the value parsed as YAML."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.max_steps=10")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        return key, yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        return key, value


def _interpolate(node: Any, variables: dict[str, Any]) -> Any:
    """Replace ``${output_dir}`` and ``${name}`` in every string of the recipe."""
    if isinstance(node, str):
        for key, value in variables.items():
            if value is not None:
                node = node.replace("${" + key + "}", str(value))
        return node
    if isinstance(node, dict):
        return {k: _interpolate(v, variables) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, variables) for v in node]
    return node


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_path(target: dict, parts: list[str], value: Any, override: str) -> None:
    for part in parts[:-1]:
        node = target.get(part)
        if node is None:
            node = target[part] = {}
        if not isinstance(node, dict):
            raise ConfigError(f"--set {override}: {part!r} is not a mapping")
        target = node
    target[parts[-1]] = value


# --------------------------------------------------------------------------------------------------
# Typed construction
# --------------------------------------------------------------------------------------------------


def _build(cls, data: Any, where: str):
    """Instantiate dataclass ``cls`` from ``data``, checking keys and coercing scalar types."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} for {cls.__name__}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing} for {cls.__name__}")
    return cls(**kwargs)


def _coerce(hint, value: Any, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {options}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is list:
        if isinstance(value, (str, int, float)) and args and args[0] is str:
            value = [value]  # report_to: tensorboard
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # "1e-5": YAML 1.1 reads it as a string
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if hint is Any:
        return value
    raise ConfigError(f"{where}: unsupported field type {hint}")
