"""Captions and questions say what is true of the scene, and scoring accepts what a model may write."""

from __future__ import annotations

import re

import numpy as np
import pytest

from videollama3.synthetic import tasks, world
from videollama3.synthetic.tasks import QA, score


def _questions(seed, n, video=False):
    for i in range(n):
        rng = tasks.qa_rng(seed, i, 0)
        if video:
            scene = world.sample_video_scene(seed, i)
            yield scene, tasks.video_questions(scene, rng)
        else:
            scene = world.sample_image_scene(seed, i)
            yield scene, tasks.image_questions(scene, rng)


def test_every_image_task_is_asked_and_answers_are_true():
    seen = set()
    for scene, questions in _questions(1, 150):
        assert questions
        for qa in questions:
            seen.add(qa.task)
            if qa.options:
                assert qa.answer in tasks.LETTERS[: len(qa.options)]
                assert len(set(qa.options)) == len(qa.options)
            if qa.question == "How many objects are there?" and not qa.options:
                assert qa.answer == str(len(scene.shapes))
            if qa.task == "text" and not qa.options:
                assert qa.answer == scene.text.word
            if qa.task == "chart_value" and not qa.options:
                values = scene.chart.values
                assert qa.answer == str(
                    max(values) if "tallest" in qa.question or "highest" in qa.question else min(values)
                )
            if qa.task == "chart_compare":
                values, labels = scene.chart.values, scene.chart.labels
                best = max if "tallest" in qa.question or "highest" in qa.question else min
                assert qa.answer == labels[values.index(best(values))]
            if qa.task in ("colour", "shape", "position", "size") and not qa.options:
                (obj,) = scene.shapes
                assert (
                    qa.answer
                    == {"colour": obj.colour, "shape": obj.shape, "position": obj.position, "size": obj.size}[qa.task]
                )
    assert seen == set(tasks.IMAGE_TASKS)


def test_every_video_task_is_asked_and_answers_are_true():
    seen = set()
    for scene, questions in _questions(2, 150, video=True):
        for qa in questions:
            seen.add(qa.task)
            if qa.task == "when" and not qa.options:
                assert qa.answer in {tasks.fmt_time(e.time) for e in scene.events}
            if qa.task == "direction" and not qa.options:
                assert qa.answer in {e.detail for e in scene.events if e.kind == "move"}
            if qa.task == "times" and "blink" in qa.question:
                name = qa.question.split("does ")[1].split(" blink")[0]
                (track,) = [i for i in range(len(scene.tracks)) if scene.name(i) == name]
                assert qa.answer == str(len(scene.track_events(track, "blink")))
    assert seen == set(tasks.VIDEO_TASKS)


def test_order_question_names_the_earlier_event():
    for scene, questions in _questions(3, 100, video=True):
        for qa in questions:
            if qa.task == "order" and not qa.options:
                first = qa.answer
                times = {tasks.event_phrase(scene, e): e.time for e in scene.events}
                other = qa.question.removeprefix("Which happens first: ").rstrip("?").split(" or ")
                assert first in other and times[first] == min(times[o] for o in other)


def test_captions_describe_everything():
    for i in range(30):
        scene = world.sample_image_scene(0, i)
        caption = tasks.image_caption(scene)
        for obj in scene.shapes:
            assert f"{obj.colour} {obj.shape}" in caption
        video = world.sample_video_scene(0, i)
        caption = tasks.video_caption(video)
        for e in video.events:
            assert f"At {tasks.fmt_time(e.time)}" in caption
        assert " a orange" not in caption and " a orange" not in tasks.image_caption(scene)


def test_language_is_grammatical():
    """Empty first frames and vowel-initial colours once produced "there are ." and "a orange"."""
    empty_start = 0
    for i in range(60):
        video = world.sample_video_scene(0, i)
        caption = tasks.video_caption(video)
        empty_start += not any(t.visible_at_start for t in video.tracks)
        assert " ." not in caption and "there are ." not in caption, caption
        scene = world.sample_image_scene(0, i)
        questions = tasks.image_questions(scene, tasks.qa_rng(0, i, 0))
        questions += tasks.video_questions(video, tasks.qa_rng(0, i, 1))
        for qa in questions:
            assert not re.search(r"\ba [aeiou]", qa.prompt), qa.prompt
    assert empty_start > 0  # the case is exercised


def test_text_questions_are_right():
    rng = np.random.default_rng(0)
    for qa in tasks.text_questions(rng):
        if qa.question.startswith("What is") and "plus" in qa.question:
            a, b = (int(w.rstrip("?")) for w in qa.question.split() if w.rstrip("?").isdigit())
            assert qa.answer == str(a + b)


def test_balanced_selection_spreads_over_tasks():
    for i in range(20):
        scene = world.sample_image_scene(0, i, kind="object")
        rng = np.random.default_rng(i)
        questions = tasks.image_questions(scene, rng)
        chosen = tasks.select_questions(questions, rng, 4)
        assert len({q.task for q in chosen}) == min(4, len({q.task for q in questions}))


def test_a_conversation_never_asks_one_fact_twice():
    """An open question and its multiple-choice form in one record would teach copying the earlier answer."""
    from videollama3.synthetic import writer

    spec = writer.WorldSpec(seed=0, questions_per_image=8, questions_per_video=8)
    seen_both_forms = 0
    for i in range(60):
        for questions in (
            tasks.image_questions(world.sample_image_scene(0, i), np.random.default_rng(i)),
            tasks.video_questions(world.sample_video_scene(0, i), np.random.default_rng(i)),
        ):
            facts = [q.fact for q in questions]
            seen_both_forms += len(facts) - len(set(facts))
            chosen = tasks.select_questions(questions, np.random.default_rng(i), 8)
            assert len({q.fact for q in chosen}) == len(chosen)
        for record in (writer.image_records(spec, i, "i.png")[1], writer.video_records(spec, i, "v.mp4")[1]):
            asked = [
                m["value"].removeprefix("<image>\n").removeprefix("<video>\n")
                for m in record["conversations"]
                if m["from"] == "human"
            ]
            assert len(record["tasks"]) >= 1 and len(set(asked)) == len(asked)
    assert seen_both_forms > 0  # the pools do hold both forms of a fact: the rule is what keeps them apart


def test_a_fact_is_the_same_for_its_open_and_multiple_choice_forms():
    open_form = tasks.QA("When does the star appear?", "2.0s", "when")
    mc_form = tasks.QA("When does the star appear?", "B", "when", ["4.0s", "2.0s", "0.0s"])
    assert open_form.fact == mc_form.fact == ("when", "2.0s")


@pytest.mark.parametrize(
    ("answer", "options", "prediction", "right"),
    [
        ("red", [], "red", True),
        ("red", [], "The answer is Red.", True),
        ("red", [], "a red", True),
        ("red", [], "reddish", False),
        ("top left", [], "Top left.", True),
        ("3", [], "3", True),
        ("3", [], "There are 3.", True),
        ("3", [], "13", False),
        ("4.0s", [], "4.0s", True),
        ("4.0s", [], "At 4 s", True),
        ("4.0s", [], "5.0s", False),
        ("the red circle appears", [], "The red circle appears.", True),
        ("B", ["red", "blue", "green"], "B", True),
        ("B", ["red", "blue", "green"], "(B) blue", True),
        ("B", ["red", "blue", "green"], "b", True),
        ("B", ["red", "blue", "green"], "blue", True),
        ("B", ["red", "blue", "green"], "A", False),
        ("A", ["a cat", "dog"], "a cat", True),
        ("yes", [], "Yes", True),
        ("yes", [], "", False),
    ],
)
def test_score(answer, options, prediction, right):
    assert score(QA("q", answer, "t", options), prediction) is right


def test_multiple_choice_prompt_format():
    qa = QA("What colour is the circle?", "B", "colour", ["red", "blue"])
    assert qa.prompt == (
        "What colour is the circle?\n(A) red\n(B) blue\nAnswer with the option's letter from the given choices directly."
    )
