"""Streaming records (``"stream": true``): video frames interleaved with timed messages, as the official
training code builds and labels them (``videollama3/train.py`` ``LazySupervisedDataset._convert_stream`` and
``videollama3/model/processor.py`` ``Videollama3Processor._process_text_with_label``; see docs/streaming.md).

A record::

    {"video": ["clips/x.mp4"], "stream": true, "start_time": 10.0, "end_time": 70.0,
     "conversation": [{"role": "user", "content": "Tell me when the dog jumps.", "time": 12.0},
                      {"role": "assistant", "content": "It jumps now.", "time": 31.0}]}

1. The video is sampled between ``start_time`` and ``end_time`` at the recipe's ``fps`` / ``max_frames``
   (the processor's sampling); message ``time`` values are on the same clock as the frame timestamps (seconds
   of the video, not of the clip).
2. Every frame with timestamp <= a message's ``time`` is placed before that message as a ``stream`` message
   of its own; frames after the last message are dropped. Beyond :data:`STREAM_MAX_FRAMES` frames, the frames
   from the 401st on and every message at or after its time are dropped.
3. Each message is templated and tokenized on its own. A ``stream`` message renders as
   ``<|stream_start|>stream\\n<image>\\n<|stream_end|>\\n`` (the training template prints no ``Time``
   label: the frame's timestamp sits under a key the template does not read); its supervised tokens are
   the token right after the frame's visual tokens and ``<|stream_end|>``. Assistant messages are
   supervised as in ordinary records (:func:`.labels.supervised_labels`).
4. Negative sampling: the token after each frame has a *sample type* (the end-of-sequence id if it is
   that token, 0 otherwise); types are balanced by un-supervising random positions of the larger types
   down to the smallest type's count. The draw is seeded by (dataset seed, sample index) here, where the
   official code uses the unseeded global torch generator.
5. Optional (``turn_labels``, the recipe's ``data.stream_turn_labels``): the official inference copy's
   layout and labels instead, the layout a :class:`~videollama3.model.live.LiveSession` reads. A ``stream``
   message renders as the released template renders one frame with its timestamp,
   ``<|stream_start|>stream\\nTime {t}s: <image>\\n<|stream_end|>`` (no newline: the next message follows
   at once); nothing in it is supervised; the first token of the stream or assistant message that follows
   a frame is (``<|stream_start|>``: stay silent, ``<|im_start|>``: speak), typed by its id and balanced
   silent against speaking by the same negative sampling.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .annotations import MEDIA_TAG, SPECIAL_TEXT, SampleError, record_media
from .labels import IGNORE_INDEX, ChatTokens, supervised_labels

# Official ``videollama3/constants.py``: frames a streaming sample keeps at most.
STREAM_MAX_FRAMES = 400
STREAM_ROLE = "stream"
# Roles a record's own messages may have; ``stream`` messages are made from the video, never written.
MESSAGE_ROLES = ("system", "user", "assistant")
STREAM_START, STREAM_END = "<|stream_start|>", "<|stream_end|>"


def is_stream_record(record: dict) -> bool:
    """Whether a record is a streaming record; ``"stream"`` must be a JSON boolean when present."""
    stream = record.get("stream", False)
    if not isinstance(stream, bool):
        raise SampleError("format", f"'stream' must be true or false, got {stream!r:.50}")
    return stream


# --------------------------------------------------------------------------------------------------
# Record -> timed messages
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimedMessage:
    role: str  # system | user | assistant
    content: str
    time: float  # seconds of the video, on the frame timestamps' clock


@dataclass(frozen=True)
class StreamRecord:
    video: Path
    start_time: float
    end_time: float
    messages: list[TimedMessage]


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SampleError("format", f"{name} must be a finite number of seconds, got {value!r:.50}")
    return float(value)


def parse_stream_record(record: dict, data_folder: str | os.PathLike | None) -> StreamRecord:
    """Check a streaming record's structure and return it typed; raises :class:`SampleError` naming the field."""
    if not is_stream_record(record):
        raise SampleError("format", "not a streaming record: 'stream' is not true")
    if "conversations" in record:
        raise SampleError("format", "a stream record holds 'conversation' (timed messages), not 'conversations'")
    if record.get("image") is not None:
        raise SampleError("format", "a stream record has one video and no 'image'")
    if record.get("video") is None:
        raise SampleError("format", "a stream record needs a 'video' (one path, or a list of one path)")
    _, videos = record_media(record, data_folder)
    if len(videos) != 1:
        raise SampleError("format", f"a stream record needs exactly one video, got {len(videos)}")
    for key in ("start_time", "end_time"):
        if key not in record:
            raise SampleError("format", f"a stream record needs '{key}'")
    start = _seconds(record["start_time"], "'start_time'")
    end = _seconds(record["end_time"], "'end_time'")
    if start < 0:
        raise SampleError("format", f"'start_time' must be >= 0, got {start}")
    if end <= start:
        raise SampleError("format", f"'end_time' ({end}) must be after 'start_time' ({start})")
    turns = record.get("conversation")
    if not isinstance(turns, list) or not turns:
        raise SampleError("format", "a stream record needs 'conversation': a non-empty list of timed messages")
    messages: list[TimedMessage] = []
    for i, turn in enumerate(turns):
        where = f"conversation[{i}]"
        if not isinstance(turn, dict) or not {"role", "content", "time"} <= set(turn):
            raise SampleError("format", f"{where}: expected {{'role', 'content', 'time'}}, got {turn!r:.100}")
        role, content = turn["role"], turn["content"]
        if role == STREAM_ROLE:
            raise SampleError("format", f"{where}: role 'stream' is not written in records: frames come from the video")
        if role not in MESSAGE_ROLES:
            raise SampleError(
                "format", f"{where}: unknown role {role!r:.30} (expected one of {', '.join(MESSAGE_ROLES)})"
            )
        if role == "system" and i > 0:
            raise SampleError("format", f"{where}: a system message must come first")
        if not isinstance(content, str):
            raise SampleError("format", f"{where}: 'content' must be a string, got {type(content).__name__}")
        for token in SPECIAL_TEXT:
            if token in content:
                raise SampleError("format", f"{where}: the text contains the chat control token {token!r}")
        if MEDIA_TAG.search(content):
            raise SampleError(
                "tags", f"{where}: media tags have no place in a stream record (frames come from 'video')"
            )
        time = _seconds(turn["time"], f"{where}: 'time'")
        if not start <= time <= end:
            raise SampleError("format", f"{where}: 'time' {time} is outside [start_time, end_time] = [{start}, {end}]")
        if messages and time < messages[-1].time:
            raise SampleError(
                "format",
                f"{where}: 'time' {time} is before the previous message's {messages[-1].time}: times must not decrease",
            )
        messages.append(TimedMessage(role, content, time))
    return StreamRecord(videos[0], start, end, messages)


# --------------------------------------------------------------------------------------------------
# Frames and messages, interleaved by time
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamFrame:
    index: int  # frame of the sampled video
    offset: float  # seconds since start_time (computed by the official code, not rendered by its template)


def interleave(
    messages: Sequence[TimedMessage], frame_times: Sequence[float], start_time: float
) -> tuple[list[StreamFrame | TimedMessage], int]:
    """Place every frame before the first message whose ``time`` is >= the frame's timestamp.

    Args:
        messages: the record's messages, times not decreasing.
        frame_times: timestamps of the sampled frames, increasing (seconds of the video).

    Returns:
        (the interleaved sequence, number of frames it shows: a prefix of the sampled frames). Frames after
        the last message are not shown. With more than :data:`STREAM_MAX_FRAMES` frames, only the first
        ones are kept and messages at or after the first dropped frame's time are dropped, with all later ones.
    """
    if len(frame_times) > STREAM_MAX_FRAMES:
        cut_time = frame_times[STREAM_MAX_FRAMES]
        frame_times = frame_times[:STREAM_MAX_FRAMES]
    else:
        cut_time = math.inf
    sequence: list[StreamFrame | TimedMessage] = []
    shown = 0
    for message in messages:
        if message.time >= cut_time:
            break
        while shown < len(frame_times) and frame_times[shown] <= message.time:
            sequence.append(StreamFrame(shown, frame_times[shown] - start_time))
            shown += 1
        sequence.append(message)
    return sequence, shown


def plan_stream(stream: StreamRecord, fps: float, max_frames: int):
    """Sample the record's video as the processor does (trimmed to [start_time, end_time]) and interleave.

    Returns:
        (the :class:`~videollama3.processing.video.VideoPlan`, the interleaved sequence, frames shown).
    """
    from ..processing import VideoSampling, plan_video

    plan = plan_video(stream.video, VideoSampling(fps, max_frames, stream.start_time, stream.end_time))
    sequence, shown = interleave(stream.messages, plan.timestamps, stream.start_time)
    if shown == 0:
        first = plan.timestamps[0] if plan.timestamps else None
        raise SampleError(
            "format",
            f"no frame is shown: every message is before the first sampled frame ({first} s) or past the frame cap",
        )
    return plan, sequence, shown


# --------------------------------------------------------------------------------------------------
# The label rule of stream messages and the negative sampling
# --------------------------------------------------------------------------------------------------


def render_message(message: StreamFrame | TimedMessage, image_token: str, frame_time: float | None = None) -> str:
    """One message as a template renders it alone.

    A frame, by default as the official training template renders it:
    ``<|stream_start|>stream\\n<image>\\n<|stream_end|>\\n`` (that template reads a ``'time'`` key, which the
    official ``_convert_stream`` never sets). With ``frame_time``: as the released (inference) template
    renders a ``stream`` message holding that one frame with its timestamp,
    ``<|stream_start|>stream\\nTime {t}s: <image>\\n<|stream_end|>`` -- by the processor's own renderer,
    which a live session renders its frames with (through ``apply_chat_template``), so the two agree.
    """
    from ..processing.chat_template import render_conversation

    if isinstance(message, StreamFrame):
        if frame_time is None:
            return f"{STREAM_START}{STREAM_ROLE}\n{image_token}\n{STREAM_END}\n"
        content = [{"type": "image", "timestamp": frame_time}]
        return render_conversation([{"role": STREAM_ROLE, "content": content}], image_token=image_token)
    return render_conversation([{"role": message.role, "content": message.content}], image_token=image_token)


def stream_message_labels(
    input_ids: torch.Tensor, image_id: int, eos_id: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and sample types of one tokenized stream message.

    Args:
        input_ids: (L,) ids of ``<|stream_start|>stream\\n`` + visual tokens + ``\\n<|stream_end|>\\n``.

    Returns:
        labels (L,): the token after each run of visual tokens and the second-to-last token
        (``<|stream_end|>``), ``-100`` elsewhere. sample_types (L,): at the token after each visual run,
        ``eos_id`` if it is that token and 0 otherwise; ``-100`` elsewhere (``<|stream_end|>`` has no type:
        it is never dropped by the negative sampling).
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    is_visual = (input_ids == image_id).to(torch.int8)
    run_ends = torch.nonzero(is_visual[:-1] - is_visual[1:] == 1)[:, 0]  # last visual token of each run
    after = run_ends + 1
    labels[after] = input_ids[after]
    sample_types = torch.full_like(input_ids, IGNORE_INDEX)
    sample_types[after] = 0 if eos_id is None else torch.where(input_ids[after] == eos_id, eos_id, 0)
    labels[-2] = input_ids[-2]
    return labels, sample_types


def balance_sample_types(labels: torch.Tensor, sample_types: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Negative sampling: keep, of every sample type, as many supervised positions as the rarest type has.

    Types are visited in increasing order; for a type with n > k positions (k: the smallest count),
    ``randperm(n)[: n - k]`` of its positions (ascending order) lose their label. One type alone: nothing
    changes.

    Args:
        labels: (L,) labels of the whole sample.
        sample_types: (L,) type per position, negative where the position has none.

    Returns:
        (L,) labels with the dropped positions set to -100 (a new tensor).
    """
    labels = labels.clone()
    typed = sample_types[sample_types > -1]
    if typed.numel() == 0:
        return labels
    types, counts = torch.unique(typed, return_counts=True)
    keep = int(counts.min())
    for sample_type, count in zip(types.tolist(), counts.tolist()):
        if count > keep:
            positions = torch.nonzero(sample_types == sample_type)[:, 0]
            dropped = torch.randperm(count, generator=generator)[: count - keep]
            labels[positions[dropped]] = IGNORE_INDEX
    return labels


def sampling_generator(seed: int, index: int) -> torch.Generator:
    """The negative sampling's random source for one sample: a function of (dataset seed, sample index) only,
    so a sample is labelled the same in every epoch, on every rank and in every DataLoader worker."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


# --------------------------------------------------------------------------------------------------
# Record -> ids, labels and pixels
# --------------------------------------------------------------------------------------------------


@dataclass
class StreamSample:
    input_ids: torch.Tensor  # (L,) int64, one <image> id per kept visual token
    labels: torch.Tensor  # (L,) int64, not shifted
    visual: dict  # pixel_values (N, 588), grid_sizes (1, 3), merge_sizes (1,), compression_mask (M,)
    num_frames: int


def _frames(plan, shown: int, size: tuple[int, int] | None, resize) -> list[np.ndarray]:
    """The first ``shown`` planned frames, each resized as soon as it is decoded (None: full size)."""
    from ..processing.video import VideoPlan

    head = VideoPlan(plan.name, plan.height, plan.width, plan.timestamps[:shown], plan.keys[:shown], plan.source)
    frames: list[np.ndarray | None] = [None] * shown
    for k, frame in head.frames():
        frames[k] = frame if size is None else resize(frame, size)
    return frames  # type: ignore[return-value]


def _visual_inputs(processor, plan, shown: int, max_tokens: int, prune: bool) -> dict:
    """Pixels of the shown frames as ONE video item (as the official code passes ``[frames]``: one shared size).

    Frames are decoded already resized to the size the processor will choose, so no full-size frame list is
    ever held; if the processor would choose another size for them, they are decoded again at full size.
    """
    image_processor = processor.image_processor
    size = image_processor.target_sizes([(shown, plan.height, plan.width)], [processor.video_merge_size], max_tokens)[0]
    for frame_size in (size, None):
        frames = _frames(plan, shown, frame_size, image_processor.resize)
        video = {"frames": frames, "timestamps": plan.timestamps[:shown]}
        out = processor(
            conversation=[{"role": "user", "content": [{"type": "video", "video": video}]}],
            return_tensors="pt",
            max_tokens=max_tokens,
            prune=prune,
        )
        grid = out["grid_sizes"][0].tolist()
        if (grid[1] * image_processor.patch_size, grid[2] * image_processor.patch_size) == size:
            break
    return {k: out[k] for k in ("pixel_values", "grid_sizes", "merge_sizes", "compression_mask")}


def _kept_per_frame(visual: dict) -> list[int]:
    """Visual tokens each frame keeps (all of them without pruning)."""
    (frames, h, w), merge = visual["grid_sizes"][0].tolist(), int(visual["merge_sizes"][0])
    per_frame = (h // merge) * (w // merge)
    return visual["compression_mask"].view(frames, per_frame).sum(1).tolist()


def build_stream_sample(
    record: dict,
    data_folder: str | os.PathLike | None,
    processor,
    tokens: ChatTokens,
    *,
    fps: float,
    max_frames: int,
    max_tokens: int,
    prune: bool,
    add_system_prompt: bool,
    generator: torch.Generator,
    turn_labels: bool = False,
) -> StreamSample:
    """A streaming record -> ids, labels (negative sampling applied) and the pixels of the frames it shows.

    ``turn_labels``: the inference copy's layout and labels (the live session's layout): frames printed with
    their timestamp and not supervised, the respond-now decision after each frame supervised instead
    (:func:`turn_label_types`). The time printed is the frame's timestamp on the video's clock (the
    processor's sampling, the clock of the messages' ``time``), what a live session fed the sampled frames
    (``load_video``) prints; not the offset from ``start_time`` the official code computes.
    """
    from ..processing.chat_template import DEFAULT_SYSTEM_PROMPT

    stream = parse_stream_record(record, data_folder)
    plan, sequence, shown = plan_stream(stream, fps, max_frames)
    if add_system_prompt and not (isinstance(sequence[0], TimedMessage) and sequence[0].role == "system"):
        sequence.insert(0, TimedMessage("system", DEFAULT_SYSTEM_PROMPT, stream.start_time))
    visual = _visual_inputs(processor, plan, shown, max_tokens, prune)
    kept = iter(_kept_per_frame(visual))

    ids, labels, types = [], [], []
    for message in sequence:
        message_ids: list[int] = []
        frame_time = plan.timestamps[message.index] if turn_labels and isinstance(message, StreamFrame) else None
        text = render_message(message, processor.image_token, frame_time)
        for token in processor.tokenizer(text)["input_ids"]:
            message_ids += [token] * (next(kept) if token == tokens.image else 1)
        message_ids = torch.tensor(message_ids, dtype=torch.long)
        no_type = torch.full_like(message_ids, IGNORE_INDEX)
        if isinstance(message, StreamFrame) and turn_labels:
            message_labels, message_types = no_type, no_type  # the inference copy: nothing inside a frame
        elif isinstance(message, StreamFrame):
            message_labels, message_types = stream_message_labels(message_ids, tokens.image, tokens.eos)
        elif message.role == "assistant":
            message_labels, message_types = supervised_labels(message_ids, tokens), no_type
        else:
            message_labels, message_types = no_type, no_type
        ids.append(message_ids)
        labels.append(message_labels)
        types.append(message_types)
    input_ids = torch.cat(ids)
    if turn_labels:
        turns = turn_label_types(sequence, [len(m) for m in ids], input_ids)
        labels = balance_sample_types(torch.where(turns > -1, input_ids, torch.cat(labels)), turns, generator)
    else:
        labels = balance_sample_types(torch.cat(labels), torch.cat(types), generator)
    return StreamSample(input_ids, labels, visual, shown)


def turn_label_types(
    sequence: Sequence[StreamFrame | TimedMessage], lengths: Sequence[int], input_ids: torch.Tensor
) -> torch.Tensor:
    """Sample types of the respond-now positions: the first token of each message that follows a frame.

    The token is ``<|stream_start|>`` (another frame: stay silent) or ``<|im_start|>`` (an assistant turn:
    speak); its type is its id, as in the official inference copy. A user or system message after a frame is
    left out (the inference copy types it too): what the user says next cannot be seen in the video, and a
    live session never asks the model there (``ask`` appends the question itself).

    Args:
        sequence: the interleaved messages; lengths: tokens of each, in ``input_ids`` (L,).

    Returns:
        (L,) the token id at the supervised positions, -100 elsewhere.
    """
    types = torch.full_like(input_ids, IGNORE_INDEX)
    start = 0
    for k, (message, length) in enumerate(zip(sequence, lengths)):
        follows_frame = k > 0 and isinstance(sequence[k - 1], StreamFrame)
        if follows_frame and (isinstance(message, StreamFrame) or message.role == "assistant"):
            types[start] = input_ids[start]
        start += length
    return types
