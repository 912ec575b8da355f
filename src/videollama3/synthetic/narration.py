"""Live narration of the synthetic world: streaming records that announce each event as it happens, and a
metric for a model that runs a live session (``model.live``) over held-out videos.

Narration time: a 1 fps reader (the processor's ``fps=1:round=down``) labels ``Time s`` the last rendered
frame before ``s + 1`` (:func:`sampled_frame_time`); an event is narrated after the first such frame that
shows it. With the world's 8 fps videos that is the event's own second for every kind (a move is half-way
in that frame); with 1 fps videos a move shows one second later.

A record (``stream.jsonl``, docs/streaming.md)::

    {"video": ["videos/000003.mp4"], "stream": true, "start_time": 0.0, "end_time": 7.0,
     "conversation": [{"role": "user", "content": "Tell me what happens.", "time": 0.0},
                      {"role": "assistant", "content": "Okay.", "time": 0.0},
                      {"role": "assistant", "content": "the red star moves left", "time": 2.0},
                      {"role": "user", "content": "What colour is the star now?", "time": 4.0},
                      {"role": "assistant", "content": "red", "time": 4.0},
                      {"role": "assistant", "content": "the red star blinks", "time": 5.0}]}

The request is acknowledged at once because a live session answers every ``ask`` right away: a record
without the answer would show a layout the session never produces.

Matching announcements (:func:`match_announcements`): an announcement at stream time ``ta`` matches an event
narrated at ``te`` when ``te <= ta <= te + window`` and its words (lower case, letters only) include the
event's *key words*: the object's shape, the verb (``moves``, ``appears``, ``disappears``, ``turns``,
``blinks``) and, for a move or a colour change, the direction or the new colour (the object's colour in its
name is not required). Announcements are taken in time order; each matches the earliest event it fits that
no earlier announcement matched, so an event announced twice counts once and the repeat is false.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import render, tasks, world

NARRATION_PROMPTS = (
    "Tell me what happens.",
    "Tell me when something happens.",
    "Narrate the video as it plays.",
    "Describe each change as it happens.",
)
ACKNOWLEDGEMENT = "Okay."
QUESTION_PROBABILITY = 0.5  # records with one question mid-stream
VERBS = ("moves", "appears", "disappears", "turns", "blinks")  # the event sentences' verbs (tasks.event_phrase)
MAX_SPEECH_TOKENS = 16


# ---------------------------------------------------------------------------------------------- events
def sampled_frame_time(scene: world.VideoScene, second: int) -> float:
    """Presentation time of the frame a 1 fps reader labels ``second``: the last one before ``second + 1``."""
    index = int(np.ceil((second + 1) * scene.fps)) - 1
    return index / scene.fps


def _shown(scene: world.VideoScene, event: world.Event, time: float):
    """What ``event`` changes about its track, in the frame at ``time``."""
    state = scene.state_at(time)[event.track]
    if event.kind == "move":
        return round(state.x, 6), round(state.y, 6)
    if event.kind == "change":
        return state.colour
    return state.visible  # appear, disappear, blink


def narration_time(scene: world.VideoScene, event: world.Event) -> int:
    """The first sampled second whose frame shows ``event`` (its own second or the next one)."""
    before = _shown(scene, event, sampled_frame_time(scene, event.time - 1))  # events start at >= 1 s
    for second in (event.time, event.time + 1):
        if _shown(scene, event, sampled_frame_time(scene, second)) != before:
            return second
    raise AssertionError(f"{event} is not visible in the frames at {event.time} s and {event.time + 1} s")


def narration_events(scene: world.VideoScene) -> list[tuple[float, str]]:
    """(narration time in seconds of the video, sentence) per event, in time order: ``the red star moves
    left``, ``the triangle turns orange`` (lower case, no final period; :func:`tasks.event_phrase`)."""
    return sorted((float(narration_time(scene, e)), tasks.event_phrase(scene, e)) for e in scene.events)


# ---------------------------------------------------------------------------------------------- records
def questions_so_far(scene: world.VideoScene, second: int, rng: np.random.Generator) -> list[tasks.QA]:
    """Questions answerable from the frames up to ``second``: the object's colour or place now (when it is
    visible and not moving), and when / where to an appearance, disappearance, colour change or move already
    narrated."""
    out: list[tasks.QA] = []
    time = sampled_frame_time(scene, second)
    for i, state in enumerate(scene.state_at(time)):
        shape, name = scene.tracks[i].shape, scene.name(i)
        if state.visible:
            out.append(tasks.QA(f"What colour is the {shape} now?", state.colour, "colour_now"))
            moving = any(e.time <= time < e.time + world.MOVE_SECONDS for e in scene.track_events(i, "move"))
            if not moving:
                cell = (int(state.y * 3), int(state.x * 3))  # (row, col) of the centre
                q = tasks._template(rng, f"Where is the {shape} now?", f"Where is {name} now?")
                out.append(tasks.QA(q, world.POSITIONS[cell], "position_now"))
        shown = [e for e in scene.track_events(i) if narration_time(scene, e) <= second]
        for e in shown:
            if e.kind in ("appear", "disappear"):
                out.append(tasks.QA(f"When did {name} {e.kind}?", tasks.fmt_time(e.time), "when"))
            elif e.kind == "change" and len(scene.track_events(i, "change")) == 1:
                out.append(tasks.QA(f"When did {name} change colour?", tasks.fmt_time(e.time), "when"))
            elif e.kind == "move":
                out.append(tasks.QA(f"Which direction did {name} move?", e.detail, "direction"))
    return out


def _message(role: str, content: str, time: float) -> dict:
    return {"role": role, "content": content, "time": float(time)}


def _question(scene: world.VideoScene, second: int, rng: np.random.Generator) -> list[tuple[float, list[dict]]]:
    """A question at ``second`` and its answer from the frames shown so far (none when nothing is known)."""
    qas = questions_so_far(scene, second, rng)
    if not qas:
        return []
    qa = world._pick(rng, qas)
    return [(float(second), [_message("user", qa.question, second), _message("assistant", qa.answer, second)])]


def stream_record(scene: world.VideoScene, video_rel_path: str, rng: np.random.Generator) -> dict:
    """The streaming record of a video: the request at 0 s (acknowledged), each event's sentence at its
    narration time, with probability :data:`QUESTION_PROBABILITY` one question at a whole second without an
    event, and a closing question at the last frame; each question is answered at once from what has been
    shown.

    The closing question keeps every frame in the record: the official layout drops the frames after the last
    message, so without it the quiet frames after the last event would never teach the model to stay silent.
    """
    prompt = world._pick(rng, NARRATION_PROMPTS)
    timed = [(t, [_message("assistant", sentence, t)]) for t, sentence in narration_events(scene)]
    last = scene.duration - 1  # the last sampled second
    if rng.random() < QUESTION_PROBABILITY:
        narrated = {t for t, _ in timed}
        seconds = [s for s in range(1, last) if s not in narrated]
        if seconds:
            timed += _question(scene, world._pick(rng, seconds), rng)
    timed += _question(scene, last, rng)
    conversation = [_message("user", prompt, 0.0), _message("assistant", ACKNOWLEDGEMENT, 0.0)]
    for _, messages in sorted(timed, key=lambda item: item[0]):
        conversation += messages
    return {
        "video": [video_rel_path],
        "stream": True,
        "start_time": 0.0,
        "end_time": float(scene.duration),
        "conversation": conversation,
    }


# ---------------------------------------------------------------------------------------------- metric
def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def key_words(sentence: str) -> set[str]:
    """The words an announcement must contain to name the event ``sentence``: shape, verb and detail."""
    words = re.findall(r"[a-z]+", sentence.lower())
    verb = next((k for k, w in enumerate(words) if w in VERBS), None)
    if verb is None or verb == 0:
        raise ValueError(f"not an event sentence (no shape before one of {VERBS}): {sentence!r}")
    return set(words[verb - 1 : verb + 2])  # shape, verb and the word after it (direction, colour) if any


def match_announcements(
    events: Sequence[tuple[float, str]],
    announcements: Sequence[tuple[float, str]],
    window: float = 1.0,
    stream_seconds: float | None = None,
) -> dict:
    """Events announced in time, and false announcements (the rule is in the module docstring).

    Args:
        events: (narration time s, sentence) of the true events.
        announcements: (stream time s, text) of what the model said on its own.
        stream_seconds: length of the stream(s), for ``false_per_minute`` (None: not computed).

    Returns:
        ``events``, ``announced``, ``announced_share`` (0-1), ``false``, ``stream_seconds``, ``false_per_minute``.
    """
    keys = [(t, key_words(sentence)) for t, sentence in sorted(events)]
    matched = [False] * len(keys)
    false = 0
    for ta, text in sorted(announcements, key=lambda a: a[0]):
        said = _words(text)
        hit = next(
            (k for k, (te, need) in enumerate(keys) if not matched[k] and te <= ta <= te + window and need <= said),
            None,
        )
        if hit is None:
            false += 1
        else:
            matched[hit] = True
    return _summary(len(keys), sum(matched), false, stream_seconds)


def _summary(events: int, announced: int, false: int, stream_seconds: float | None) -> dict:
    per_minute = None if not stream_seconds else 60.0 * false / stream_seconds
    return {
        "events": events,
        "announced": announced,
        "announced_share": announced / events if events else 0.0,
        "false": false,
        "stream_seconds": stream_seconds,
        "false_per_minute": per_minute,
    }


def combine(results: Sequence[dict]) -> dict:
    """One :func:`match_announcements` result for several streams (counts and seconds summed)."""
    seconds = [r["stream_seconds"] for r in results]
    total = None if any(s is None for s in seconds) else float(sum(seconds))
    return _summary(
        sum(r["events"] for r in results), sum(r["announced"] for r in results), sum(r["false"] for r in results), total
    )


# ---------------------------------------------------------------------------------------------- live runs
def narrate(session, frames: Sequence, times: Sequence[float], prompt: str = NARRATION_PROMPTS[0]) -> list:
    """Run a live session over one video as a narration record lays it out; returns the model's own
    announcements as (frame time s, text).

    The first frame comes before the request (the model is not let to speak there, as in the records), the
    request's answer (the acknowledgement) is read and not scored, then after each later frame the session
    decides on its own whether to speak.
    """
    announcements = []
    for k, (frame, t) in enumerate(zip(frames, times)):
        if k == 0:
            autonomous, session.autonomous = session.autonomous, False
            session.add_frame(frame, t)
            session.autonomous = autonomous
            "".join(session.ask(prompt, max_new_tokens=MAX_SPEECH_TOKENS))
            continue
        result = session.add_frame(frame, t)
        if result.spoke:
            announcements.append((float(t), result.text.strip()))
    return announcements


def evaluate_narration(
    model_dir: str | os.PathLike | None = None,
    n: int = 50,
    seed: int = 0,
    speak_margin: float = 0.0,
    *,
    window: float = 1.0,
    system_prompt: bool = False,
    device: str = "cpu",
    progress: bool = False,
) -> dict:
    """Announcements of ``model_dir`` (default: the bundled narrator) over ``n`` held-out videos: those of the
    held-out benchmark ``seed`` (world seed ``BENCHMARK_SEED_OFFSET + seed``, never a training seed), each
    written as the dataset writes it, sampled at 1 fps by the processor and fed to an autonomous live
    session in stream time. Greedy, at most :data:`MAX_SPEECH_TOKENS` tokens per announcement.

    Returns :func:`match_announcements` over all streams, plus ``videos`` and ``speak_margin``.
    """
    import torch

    from ..model.modeling import VideoLLaMA3ForCausalLM
    from ..processing import VideoLLaMA3Processor, load_video
    from . import NARRATOR_MODEL_NAME, default_model_path
    from .writer import BENCHMARK_SEED_OFFSET, _progress

    model_dir = str(model_dir or default_model_path(NARRATOR_MODEL_NAME))
    processor = VideoLLaMA3Processor.from_pretrained(model_dir)
    model = VideoLLaMA3ForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    world_seed = BENCHMARK_SEED_OFFSET + seed
    results = []
    bar = _progress(n, "narration", progress)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            scene = world.sample_video_scene(world_seed, i)
            path = Path(tmp) / f"{i:06d}.mp4"
            render.write_video(render.render_video(scene), path, scene.fps)
            frames, times = load_video(path, fps=1.0, max_frames=scene.n_sampled_frames)  # (84, 84, 3) uint8 each
            session = model.live(
                processor, speak_margin=speak_margin, max_speech_tokens=MAX_SPEECH_TOKENS, system_prompt=system_prompt
            )
            said = narrate(session, frames, times)
            results.append(match_announcements(narration_events(scene), said, window, float(len(frames))))
            bar.update(1)
    bar.close()
    return {**combine(results), "videos": n, "speak_margin": speak_margin}
