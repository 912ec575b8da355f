"""Live narration of the synthetic world (synthetic/narration.py): narration times against what the sampled
frames show, the streaming records, the announcement metric and the session loop."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from videollama3.synthetic import narration, tasks, world
from videollama3.synthetic.narration import match_announcements
from videollama3.training.streaming import parse_stream_record

SCENES = [world.sample_video_scene(0, i) for i in range(120)]


# --------------------------------------------------------------------------------------------------
# Narration times
# --------------------------------------------------------------------------------------------------


def frame_state(scene, second, track):
    """The track's state in the frame a 1 fps reader labels ``second``."""
    return scene.state_at(narration.sampled_frame_time(scene, second))[track]


@pytest.mark.parametrize("fps", [8, 1])
def test_an_event_is_narrated_at_the_first_sampled_frame_that_shows_it(fps):
    for scene in [world.sample_video_scene(0, i, fps=fps) for i in range(120)]:
        for event in scene.events:
            t = narration.narration_time(scene, event)
            before = frame_state(scene, event.time - 1, event.track)
            assert t in (event.time, event.time + 1)
            assert frame_state(scene, t, event.track) != before
            if t == event.time + 1:
                assert frame_state(scene, event.time, event.track) == before
            # 8 fps: the frame labelled T is rendered at T + 7/8, so every change shows at once (a move
            # half-way); 1 fps: the frame at T is the move's start, so it shows at T + 1.
            assert t == event.time + (fps == 1 and event.kind == "move")


def test_sampled_frame_time_is_the_last_rendered_frame_before_the_next_second():
    scene = SCENES[0]
    assert narration.sampled_frame_time(scene, 2) == 2 + 7 / 8
    assert narration.sampled_frame_time(world.sample_video_scene(0, 0, fps=1), 2) == 2.0


def test_the_decoded_frame_at_a_narration_time_shows_the_event(tmp_path):
    """On pixels: the processor's 1 fps sampling of the written video changes at the narration time."""
    from videollama3.processing import load_video
    from videollama3.synthetic import render

    scene = next(s for s in SCENES if any(e.kind == "move" for e in s.events))
    path = tmp_path / "v.mp4"
    render.write_video(render.render_video(scene), path, scene.fps)
    frames, times = load_video(path, fps=1.0, max_frames=100)
    assert times == [float(s) for s in range(scene.duration)]
    changed = {s for s in range(1, scene.duration) if np.abs(frames[s].astype(int) - frames[s - 1]).max() > 40}
    narrated = {int(t) for t, _ in narration.narration_events(scene)}
    # A move also changes the next frame (it ends there); a blink the next (the object is back).
    assert narrated <= changed and changed <= narrated | {t + 1 for t in narrated}


def test_narration_sentences_are_the_captions_phrases():
    scene = world.VideoScene(
        8,
        8,
        world.VIDEO_BACKGROUND,
        [world.Track("star", "red", "small", (1, 1), 0.5, 0.5)],
        [world.Event(2, "move", 0, "left"), world.Event(4, "blink", 0), world.Event(6, "change", 0, "orange")],
    )
    assert narration.narration_events(scene) == [
        (2.0, "the star moves left"),  # named by shape alone: its colour changes
        (4.0, "the star blinks"),
        (6.0, "the star turns orange"),
    ]


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


def records():
    return [narration.stream_record(s, f"videos/{i:06d}.mp4", tasks.qa_rng(0, i, 13)) for i, s in enumerate(SCENES)]


def test_records_are_valid_streaming_records_that_narrate_every_event(tmp_path):
    asked = 0
    for scene, record in zip(SCENES, records()):
        stream = parse_stream_record(json.loads(json.dumps(record)), tmp_path)
        assert (stream.start_time, stream.end_time) == (0.0, float(scene.duration))
        first, ack, *rest = stream.messages
        assert (first.role, first.time, first.content in narration.NARRATION_PROMPTS) == ("user", 0.0, True)
        assert (ack.role, ack.content, ack.time) == ("assistant", narration.ACKNOWLEDGEMENT, 0.0)
        users = [k for k, m in enumerate(rest) if m.role == "user"]
        answers = {k + 1 for k in users}
        narrated = [(m.time, m.content) for k, m in enumerate(rest) if m.role == "assistant" and k not in answers]
        assert narrated == narration.narration_events(scene)
        for k in users:  # a question at a whole second, answered at once
            assert rest[k].time == rest[k + 1].time == int(rest[k].time) and rest[k + 1].role == "assistant"
        # The closing question at the last frame keeps every frame (the quiet ones too) in the record.
        *middle, closing = users
        assert rest[closing].time == scene.duration - 1 and closing + 1 == len(rest) - 1
        for k in middle:  # at most one more, mid-stream, at a second without an event
            assert rest[k].time not in [t for t, _ in narrated] and rest[k].time < scene.duration - 1
        assert len(middle) <= 1
        asked += len(middle)
    assert 0.3 * len(SCENES) < asked < 0.7 * len(SCENES)


def test_questions_so_far_are_answered_from_the_frames_shown():
    scene = world.VideoScene(
        8,
        8,
        world.VIDEO_BACKGROUND,
        [world.Track("square", "blue", "large", (1, 1), 0.5, 0.5, visible_at_start=False)],
        [world.Event(1, "appear", 0), world.Event(3, "move", 0, "up"), world.Event(5, "change", 0, "red")],
    )
    rng = np.random.default_rng(0)

    def answers(second):
        return {(q.task, q.answer) for q in narration.questions_so_far(scene, second, rng)}

    # Frame 3 shows the move half-way: its direction, but no place; the appearance at 1 s is known.
    assert answers(3) == {("colour_now", "blue"), ("when", "1.0s"), ("direction", "up")}
    assert answers(0) == set()  # nothing shown yet
    assert answers(4) == {("colour_now", "blue"), ("position_now", "top"), ("when", "1.0s"), ("direction", "up")}
    assert ("when", "5.0s") in answers(5) and ("colour_now", "red") in answers(5)


def test_dataset_writes_one_stream_record_per_video_that_data_check_accepts(tmp_path):
    from videollama3.synthetic.writer import STREAM_FILE, WorldSpec, write_dataset
    from videollama3.training.data import Source
    from videollama3.training.recipe import DataConfig, SourceConfig
    from videollama3.training.validation import check_file

    files = write_dataset(tmp_path, WorldSpec(seed=3, images=0, videos=2, texts=0), progress=False)
    lines = files[STREAM_FILE].read_text().splitlines()
    assert [json.loads(line)["video"] for line in lines] == [["videos/000000.mp4"], ["videos/000001.mp4"]]
    assert json.loads((tmp_path / "meta.json").read_text())["files"][STREAM_FILE] == STREAM_FILE
    config = DataConfig(sources=[SourceConfig(path=str(files[STREAM_FILE]))])
    problems = []
    log, stats = check_file(Source(files[STREAM_FILE], tmp_path, 1.0, "stream"), config, out=problems.append)
    assert log.seen == 2 and log.skipped == 0, problems


# --------------------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------------------

EVENTS = [(2.0, "the red star moves left"), (4.0, "the star blinks"), (6.0, "the triangle turns orange")]


def test_announcements_match_events_in_the_window_by_their_key_words():
    said = [
        (2.0, "The star moves left."),  # colour not needed
        (5.0, "the star blinks"),  # 1 s late: inside the window
        (6.0, "the triangle turns red"),  # wrong colour: false
    ]
    assert match_announcements(EVENTS, said, stream_seconds=30.0) == {
        "events": 3,
        "announced": 2,
        "announced_share": 2 / 3,
        "false": 1,
        "stream_seconds": 30.0,
        "false_per_minute": 2.0,
    }


@pytest.mark.parametrize(
    "said, announced, false",
    [
        ([(1.0, "the red star moves left")], 0, 1),  # before the event
        ([(3.5, "the red star moves left")], 0, 1),  # past the window
        ([(2.0, "the red circle moves left")], 0, 1),  # another shape
        ([(2.0, "the red star moves right")], 0, 1),  # another direction
        ([(2.0, "the red star moved left")], 0, 1),  # another verb form
        ([(2.0, "star left moves now")], 1, 0),  # the key words, in any order
        ([(2.0, "the star moves left"), (3.0, "the star moves left")], 1, 1),  # a repeat is false
        ([(4.0, "the star blinks"), (5.0, "the star blinks")], 1, 1),
        ([], 0, 0),
    ],
)
def test_match_announcement_cases(said, announced, false):
    result = match_announcements(EVENTS, said)
    assert (result["announced"], result["false"], result["false_per_minute"]) == (announced, false, None)


def test_disappears_is_not_appears():
    events = [(3.0, "the blue circle appears")]
    assert match_announcements(events, [(3.0, "the blue circle disappears")])["false"] == 1
    assert match_announcements(events, [(3.0, "a blue circle appears")])["announced"] == 1


def test_a_blink_train_is_matched_event_by_event():
    events = [(2.0, "the star blinks"), (4.0, "the star blinks")]
    result = match_announcements(events, [(3.0, "the star blinks"), (4.0, "the star blinks")], window=1.0)
    assert (result["announced"], result["false"]) == (2, 0)


def test_results_combine_over_streams():
    a = match_announcements(EVENTS, [(2.0, "the star moves left")], stream_seconds=8.0)
    b = match_announcements(EVENTS[:1], [(0.0, "the star blinks")], stream_seconds=7.0)
    total = narration.combine([a, b])
    assert (total["events"], total["announced"], total["false"], total["stream_seconds"]) == (4, 1, 1, 15.0)
    assert total["announced_share"] == 0.25 and total["false_per_minute"] == 4.0


def test_a_sentence_without_a_verb_is_refused():
    with pytest.raises(ValueError, match="not an event sentence"):
        match_announcements([(1.0, "nothing happens")], [])


# --------------------------------------------------------------------------------------------------
# The session loop
# --------------------------------------------------------------------------------------------------


class StubSession:
    """A LiveSession stand-in: speaks after the frames of ``speak_at`` when autonomous; records the calls."""

    def __init__(self, speak_at: dict[float, str]):
        self.speak_at, self.autonomous, self.calls = speak_at, True, []

    def add_frame(self, frame, t):
        self.calls.append(("frame", t, self.autonomous))
        text = self.speak_at.get(t, "") if self.autonomous else ""
        return SimpleNamespace(spoke=bool(text), text=text)

    def ask(self, text, max_new_tokens):
        self.calls.append(("ask", text, max_new_tokens))
        return iter(["Ok", "ay."])


def test_narrate_feeds_frames_in_stream_time_and_collects_what_the_model_says():
    session = StubSession({0.0: "the star blinks", 2.0: " the red star moves left\n", 3.0: "the star blinks"})
    times = [0.0, 1.0, 2.0, 3.0]
    said = narration.narrate(session, [np.zeros((84, 84, 3), np.uint8)] * 4, times)
    assert said == [(2.0, "the red star moves left"), (3.0, "the star blinks")]
    # The first frame, silent (the user's request follows it, as in the records), then the request.
    assert session.calls == [
        ("frame", 0.0, False),
        ("ask", narration.NARRATION_PROMPTS[0], narration.MAX_SPEECH_TOKENS),
        ("frame", 1.0, True),
        ("frame", 2.0, True),
        ("frame", 3.0, True),
    ]
    assert session.autonomous
    assert match_announcements(EVENTS, said, stream_seconds=4.0)["announced"] == 1


def test_evaluate_narration_runs_a_live_session_per_held_out_video():
    """Wiring only, on the random test checkpoint (its speech is noise): told to speak after every frame, it
    makes one announcement per frame after the first, none of which names an event."""
    from videollama3.synthetic.writer import BENCHMARK_SEED_OFFSET

    model = Path(__file__).resolve().parents[1] / "fixtures" / "parity" / "model"
    result = narration.evaluate_narration(model, n=1, seed=0, speak_margin=-1e9)
    scene = world.sample_video_scene(BENCHMARK_SEED_OFFSET, 0)
    assert result["events"] == len(scene.events) and result["videos"] == 1
    assert result["stream_seconds"] == scene.duration and result["false"] == scene.duration - 1
