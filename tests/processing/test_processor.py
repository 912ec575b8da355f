"""The processor against the reference's outputs (every fixture case), and its API: loading, budget,
pruning, batching, media forms and errors."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from vl3_media import CASE_NAMES, FIXTURE_MODEL, FIXTURES, load_case, make_video

from videollama3.errors import CheckpointError, ConversationError, MediaError, MediaNotFoundError
from videollama3.processing import VideoLLaMA3ImageProcessor, VideoLLaMA3Processor

IMAGE_TOKEN_ID = 488
PAD_ID = 486


@pytest.fixture(scope="module")
def processor():
    return VideoLLaMA3Processor.from_pretrained(FIXTURE_MODEL)


def _run(processor, case, **kwargs):
    return processor(
        conversation=case["conversation"],
        add_system_prompt=case["add_system_prompt"],
        add_generation_prompt=case["add_generation_prompt"],
        max_tokens=case["image_processor_max_tokens"],
        media_root=FIXTURES,
        **kwargs,
    )


# -- parity with the reference -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASE_NAMES)
def test_replays_every_fixture_case(processor, name):
    case, inputs, outputs = load_case(name)
    assert (
        processor.apply_chat_template(
            case["conversation"],
            add_system_prompt=case["add_system_prompt"],
            add_generation_prompt=case["add_generation_prompt"],
            media_root=FIXTURES,
        )
        == case["prompt"]
    )

    unpruned = _run(processor, case, prune=False)
    assert torch.equal(unpruned["input_ids"], inputs["input_ids"])
    assert torch.equal(unpruned["attention_mask"], inputs["attention_mask"])
    assert unpruned["modals"] == case["modals"]

    pruned = _run(processor, case)
    if "pixel_values" not in inputs:
        assert "pixel_values" not in pruned and torch.equal(pruned["input_ids"], inputs["input_ids"])
        return
    for out in (unpruned, pruned):
        assert out["pixel_values"].dtype == torch.float32
        torch.testing.assert_close(out["pixel_values"], inputs["pixel_values"], atol=1e-6, rtol=0)
        assert torch.equal(out["grid_sizes"], inputs["grid_sizes"])
        assert torch.equal(out["merge_sizes"], inputs["merge_sizes"])
    mask = outputs["compression_mask"]
    assert torch.equal(pruned["compression_mask"], mask)
    assert unpruned["compression_mask"].all() and unpruned["compression_mask"].shape == mask.shape
    # Pruned ids = the reference ids without the pruned <image> positions (as long as the logits).
    ids = inputs["input_ids"][0]
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[(ids == IMAGE_TOKEN_ID).nonzero()[:, 0][~mask]] = False
    assert torch.equal(pruned["input_ids"][0], ids[keep])
    assert pruned["input_ids"].shape[1] == outputs["logits"].shape[0]
    assert pruned["attention_mask"].all()


def test_compression_switches(processor):
    case, inputs, outputs = load_case("video_static_pruned")
    off = copy.copy(processor)
    off.use_token_compression = False
    out = _run(off, case)
    assert torch.equal(out["input_ids"], inputs["input_ids"]) and out["compression_mask"].all()
    assert _run(off, case, prune=True)["compression_mask"].sum() == outputs["compression_mask"].sum()
    strict = copy.copy(processor)
    strict.compression_threshold, strict.compression_min_tokens = 1e6, 3
    out = _run(strict, case)
    t, gh, gw = out["grid_sizes"][0].tolist()
    assert out["compression_mask"].sum() == (gh // 2) * (gw // 2) + (t - 1) * 3  # frame 0 whole, 3 tokens of the rest


# -- loading ---------------------------------------------------------------------------------------------------


def test_from_pretrained_reads_the_three_configs(processor):
    assert (processor.image_merge_size, processor.video_merge_size, processor.fps, processor.max_frames) == (
        1,
        2,
        1,
        180,
    )
    assert processor.image_token_id == IMAGE_TOKEN_ID and processor.use_token_compression
    assert isinstance(processor.image_processor, VideoLLaMA3ImageProcessor)
    assert processor.image_processor.min_tokens == 16 and processor.image_processor.max_tokens == 16384
    assert VideoLLaMA3Processor.from_pretrained(FIXTURE_MODEL, fps=2, max_tokens=64).image_processor.max_tokens == 64


def test_auto_processor_returns_ours_without_remote_code():
    import transformers

    import videollama3  # noqa: F401  (registers the auto classes)

    loaded = transformers.AutoProcessor.from_pretrained(FIXTURE_MODEL)
    assert isinstance(loaded, VideoLLaMA3Processor)


def test_hub_names_resolve_from_the_local_cache(tmp_path):
    snapshot = tmp_path / "models--DAMO-NLP-SG--VideoLLaMA3-Tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(FIXTURE_MODEL, snapshot, ignore=shutil.ignore_patterns("*.safetensors"))
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    loaded = VideoLLaMA3Processor.from_pretrained(
        "DAMO-NLP-SG/VideoLLaMA3-Tiny", cache_dir=tmp_path, local_files_only=True
    )
    assert loaded.image_token_id == IMAGE_TOKEN_ID
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        VideoLLaMA3Processor.from_pretrained("DAMO-NLP-SG/absent", cache_dir=tmp_path, local_files_only=True)
    with pytest.raises(CheckpointError, match="no such folder"):
        VideoLLaMA3Processor.from_pretrained(tmp_path / "missing" / "deeper" / "dir")


def test_save_pretrained_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["processor_class"] == "Videollama3Qwen2Processor" and config["video_merge_size"] == 2
    again = VideoLLaMA3Processor.from_pretrained(tmp_path)
    case, inputs, _ = load_case("image_single")
    assert torch.equal(_run(again, case, prune=False)["input_ids"], inputs["input_ids"])


# -- budget, batching, decoding helpers -----------------------------------------------------------------------


def test_budget_attribute_and_per_call(processor):
    case, inputs, _ = load_case("image_large_budget")  # made with max_tokens=256
    conv = case["conversation"]
    limited = copy.copy(processor)
    limited.image_processor = copy.copy(processor.image_processor)
    limited.image_processor.max_tokens = 256
    out = limited(conv, add_system_prompt=True, add_generation_prompt=True, media_root=FIXTURES)
    assert torch.equal(out["grid_sizes"], inputs["grid_sizes"])
    out = processor(conv, add_system_prompt=True, add_generation_prompt=True, media_root=FIXTURES, max_tokens=256)
    assert torch.equal(out["grid_sizes"], inputs["grid_sizes"])
    assert processor(conv, media_root=FIXTURES)["grid_sizes"].tolist() == [[1, 50, 71]]  # 16384: rounded only


def test_budget_is_shared_by_the_images_of_one_sample(processor):
    image = {"type": "image", "image": {"image_path": "media/image_c.png"}}
    one = processor([{"role": "user", "content": [image]}], media_root=FIXTURES, max_tokens=300)
    two = processor([{"role": "user", "content": [image, image]}], media_root=FIXTURES, max_tokens=300)
    tokens_one = one["grid_sizes"][:, 1:].prod(dim=1)
    tokens_two = two["grid_sizes"][:, 1:].prod(dim=1)
    assert tokens_one.sum() <= 300 and tokens_two.sum() <= 300
    assert (tokens_two <= tokens_one // 2).all()  # each image gets half the budget


def test_batch_is_left_padded_and_packed_in_sample_order(processor):
    names = ["image_single", "text_multiturn", "video_static_pruned"]
    cases = [load_case(n) for n in names]
    batch = processor(
        [c[0]["conversation"] for c in cases], add_system_prompt=True, add_generation_prompt=True, media_root=FIXTURES
    )
    singles = [
        processor(c[0]["conversation"], add_system_prompt=True, add_generation_prompt=True, media_root=FIXTURES)
        for c in cases
    ]
    length = max(s["input_ids"].shape[1] for s in singles)
    assert batch["input_ids"].shape == (3, length)
    for row, single in enumerate(singles):
        n = single["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][row, length - n :], single["input_ids"][0])
        assert (batch["input_ids"][row, : length - n] == PAD_ID).all()
        assert batch["attention_mask"][row].sum() == n and not batch["attention_mask"][row, : length - n].any()
    visual = [s for s in singles if "pixel_values" in s]
    assert torch.equal(batch["pixel_values"], torch.cat([s["pixel_values"] for s in visual]))
    assert torch.equal(batch["grid_sizes"], torch.cat([s["grid_sizes"] for s in visual]))
    assert torch.equal(batch["compression_mask"], torch.cat([s["compression_mask"] for s in visual]))
    assert batch["modals"] == ["image", "video"]
    assert processor.batch_decode(batch["input_ids"][:, -3:], skip_special_tokens=False)[1] == processor.decode(
        singles[1]["input_ids"][0, -3:]
    )


def test_images_as_paths_pil_and_arrays_are_the_same(processor):
    path = FIXTURES / "media" / "image_b.png"
    forms = [
        {"image_path": "media/image_b.png"},
        "media/image_b.png",
        str(path),
        Image.open(path),
        np.asarray(Image.open(path)),
    ]
    outs = [
        processor([{"role": "user", "content": [{"type": "image", "image": form}]}], media_root=FIXTURES)
        for form in forms
    ]
    for out in outs[1:]:
        assert torch.equal(out["pixel_values"], outs[0]["pixel_values"])
        assert torch.equal(out["input_ids"], outs[0]["input_ids"])


def test_video_as_a_list_of_frames(processor, tmp_path):
    frames = [np.full((56, 84, 3), 10 * i, np.uint8) for i in range(4)]
    conv = [
        {"role": "user", "content": [{"type": "video", "video": {"frames": frames, "timestamps": [0, 1, 2, 3]}}, "Q"]}
    ]
    prompt = processor.apply_chat_template(conv)
    assert prompt.startswith(
        "<|im_start|>user\nTime 0.0s:<image>,Time 1.0s:<image>,Time 2.0s:<image>,Time 3.0s:<image>\nQ"
    )
    out = processor(conv)
    # 56x84 frames are 2x3 merged tokens, enlarged to the 16-token minimum: 112x140 pixels.
    assert out["grid_sizes"].tolist() == [[4, 8, 10]] and out["merge_sizes"].tolist() == [2]
    no_times = processor.apply_chat_template([{"role": "user", "content": [{"type": "video", "video": frames[:2]}]}])
    assert "<image>,<image>\n" in no_times and "Time" not in no_times


def test_several_trims_of_one_video_are_decoded_once(processor, tmp_path):
    path = make_video(tmp_path / "clip.mp4", num_frames=80, fps=10)

    def video(**trim):
        return {"type": "video", "video": {"video_path": str(path), "fps": 1, **trim}}

    conv = [
        {
            "role": "user",
            "content": [
                video(start_time=1.0, end_time=3.0),
                video(start_time=4.0),
                video(start_time=2.0, end_time=6.0),
            ],
        }
    ]
    prompt = processor.apply_chat_template(conv)
    # Loaded once from 1.0 s (the union): frames at 1..7 s; each item keeps those inside its own trim.
    assert prompt == (
        "<|im_start|>user\nTime 1.0s:<image>,Time 2.0s:<image>,Time 3.0s:<image>\n"
        "Time 4.0s:<image>,Time 5.0s:<image>,Time 6.0s:<image>,Time 7.0s:<image>\n"
        "Time 2.0s:<image>,Time 3.0s:<image>,Time 4.0s:<image>,Time 5.0s:<image>,Time 6.0s:<image>\n<|im_end|>\n"
    )
    out = processor(conv)
    assert out["grid_sizes"][:, 0].tolist() == [3, 4, 5]
    rows = out["grid_sizes"][0, 1:].prod().item()
    first, third = out["pixel_values"][: 3 * rows], out["pixel_values"][(3 + 4) * rows :]
    assert torch.equal(first[rows:], third[: 2 * rows])  # the frames at 2 and 3 s, decoded once


def test_progress_callback(processor, tmp_path):
    path = make_video(tmp_path / "clip.mp4", num_frames=40, fps=10)
    calls = []
    processor(
        [{"role": "user", "content": [{"type": "video", "video": {"video_path": str(path)}}]}],
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls and calls[-1][0] == calls[-1][1]


# -- errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conversation", "error", "match"),
    [
        (
            [{"role": "user", "content": [{"type": "audio", "audio": "x.wav"}]}],
            ConversationError,
            "unknown content type 'audio'",
        ),
        ([{"role": "user", "content": [{"type": "image"}]}], ConversationError, "an image item without an image"),
        ([{"role": "user", "content": [{"type": "video"}]}], ConversationError, "a video item without a video"),
        (
            [{"role": "user", "content": [{"type": "text", "text": "look: <image>"}]}],
            ConversationError,
            "contains '<image>'",
        ),
        ([{"role": "user", "content": "<image>\nWhat is it?"}], ConversationError, "contains '<image>'"),
        (
            [{"role": "user", "content": [{"type": "image", "image": {"url": "x"}}]}],
            ConversationError,
            "needs 'image_path'",
        ),
        (
            [{"role": "user", "content": [{"type": "video", "video": {"video_path": "v.mp4", "max_frame": 3}}]}],
            ConversationError,
            "unknown video option",
        ),
        ([{"role": "user", "content": 42}], ConversationError, "content must be a string or a list"),
        ([{"content": "hi"}], ConversationError, "expected a dict with 'role' and 'content'"),
        ([], ConversationError, "non-empty list"),
        ([{"role": "user", "content": [{"type": "image", "image": "media/nope.png"}]}], MediaNotFoundError, "nope.png"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "video", "video": {"video_path": "media/video_moving.mp4", "fps": 0}}],
                }
            ],
            MediaError,
            "fps must be > 0",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "video", "video": {"video_path": "media/video_moving.mp4", "max_frames": 0}}],
                }
            ],
            MediaError,
            "max_frames must be >= 1",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "video",
                            "video": {"video_path": "media/video_moving.mp4", "start_time": 4, "end_time": 2},
                        }
                    ],
                }
            ],
            MediaError,
            "after end_time",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "video", "video": {"video_path": "media/video_moving.mp4", "start_time": 99}}],
                }
            ],
            MediaError,
            "past the end",
        ),
    ],
)
def test_conversation_errors(processor, conversation, error, match):
    with pytest.raises(error, match=match):
        processor(conversation, media_root=FIXTURES)


def test_only_pytorch_tensors(processor):
    with pytest.raises(ValueError, match="return_tensors"):
        processor([{"role": "user", "content": "hi"}], return_tensors="np")


def test_background_decoding_stops_and_cleans_up_when_the_consumer_stops():
    from videollama3.processing.parallel import prefetched

    closed = []

    def frames():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    for item in prefetched(frames()):
        if item == 3:
            break
    assert closed == [True]

    def failing():
        yield 1
        raise MediaError("corrupt frame")

    with pytest.raises(MediaError, match="corrupt frame"):
        list(prefetched(failing()))
