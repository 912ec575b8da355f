"""Language about the synthetic world: captions, question-answer pairs and text-only instructions.

Every question is a :class:`QA` with a ``task`` name (the unit of per-task accuracy), the exact ``answer``
and, for multiple-choice questions, the ``options`` (the answer is then the option's letter). Answers are
short and canonical (``red``, ``3``, ``top left``, ``left``, ``4.0s``, ``B``) so that scoring is exact,
and :func:`score` accepts the natural variants (``The answer is red.``, ``4 s``, ``(B)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .world import (
    COLOURS,
    DIRECTIONS,
    DOMAIN_QA,
    DOMAIN_TEXT,
    POSITIONS,
    ROW_NAMES,
    SHAPES,
    WORDS,
    Event,
    ImageScene,
    VideoScene,
    _pick,
    item_rng,
)

MC_SUFFIX = "Answer with the option's letter from the given choices directly."
LETTERS = "ABCD"

IMAGE_TASKS = (
    "colour", "shape", "count", "position", "size", "exists", "text", "text_colour", "chart_value", "chart_compare",
)  # fmt: skip
VIDEO_TASKS = ("direction", "when", "order", "times", "colour_change")
TEXT_TASKS = ("arithmetic", "compare", "knowledge", "spelling")


@dataclass
class QA:
    """One question about one item. ``options`` is set for multiple choice (then ``answer`` is a letter)."""

    question: str
    answer: str
    task: str
    options: list[str] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        """The question as the user asks it (options and the answer-format instruction included)."""
        if not self.options:
            return self.question
        lines = [self.question] + [f"({LETTERS[i]}) {o}" for i, o in enumerate(self.options)] + [MC_SUFFIX]
        return "\n".join(lines)

    @property
    def kind(self) -> str:
        return "mc" if self.options else "open"

    @property
    def fact(self) -> tuple[str, str]:
        """What the question asks about, as (task, true answer in words): the same for a question's open
        and multiple-choice forms."""
        return self.task, self.options[LETTERS.index(self.answer)] if self.options else self.answer


def _template(rng: np.random.Generator, *choices: str) -> str:
    return choices[int(rng.integers(len(choices)))]


def _mc(rng: np.random.Generator, question: str, answer: str, pool: list[str], task: str, n: int = 4) -> QA:
    """A multiple-choice QA: ``answer`` plus ``n - 1`` distractors from ``pool``, shuffled."""
    distractors = [p for p in dict.fromkeys(pool) if p != answer]
    chosen = _pick(rng, distractors, size=min(n - 1, len(distractors)))
    options = [answer, *chosen]
    order = rng.permutation(len(options))
    options = [options[i] for i in order]
    return QA(question, LETTERS[options.index(answer)], task, options)


def _plural(shape: str) -> str:
    return shape + "s"


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _a(phrase: str) -> str:
    """``a red circle`` / ``an orange square``."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _location(cell_name: str) -> str:
    return "in the center" if cell_name == "center" else f"at the {cell_name}"


# ---------------------------------------------------------------------------------------------- captions
def image_caption(scene: ImageScene) -> str:
    """A complete description of an image (stage 1 / 2 "scene captions")."""
    if scene.kind == "chart":
        c = scene.chart
        values = _join([f"{label} is {value}" for label, value in zip(c.labels, c.values)])
        return f"A bar chart with {len(c.values)} {c.colour} bars: {values}."
    if scene.kind == "text":
        t = scene.text
        return f'The word "{t.word}" is written in {t.colour} at the {ROW_NAMES[t.row]}.'
    objs = scene.shapes
    if len(objs) == 1:
        return f"There is {_a(objs[0].describe(with_size=True))} {_location(objs[0].position)}."
    o = objs[0]
    return f"There are {len(objs)} {o.size} {o.colour} {_plural(o.shape)}."


def event_phrase(scene: VideoScene, event: Event) -> str:
    """``the red circle moves left``, ``the square changes colour``, ..."""
    name = scene.name(event.track)
    if event.kind == "move":
        return f"{name} moves {event.detail}"
    if event.kind == "appear":
        return f"{name} appears"
    if event.kind == "disappear":
        return f"{name} disappears"
    if event.kind == "change":
        return f"{name} turns {event.detail}"
    if event.kind == "blink":
        return f"{name} blinks"
    raise ValueError(event.kind)


def fmt_time(seconds: float) -> str:
    """Times as the chat template writes them (``Time 3.0s:``): one decimal and ``s``."""
    return f"{float(seconds):.1f}s"


def video_caption(scene: VideoScene) -> str:
    """What is there at the start, then every event in time order with its time."""
    start = [t for t in scene.tracks if t.visible_at_start]
    things = _join([f"{_a(t.colour + ' ' + t.shape)} {_location(POSITIONS[t.cell])}" for t in start])
    if not start:
        sentences = ["At the start the scene is empty."]
    elif len(start) == 1:
        sentences = [f"At the start there is {things}."]
    else:
        sentences = [f"At the start there are {things}."]
    for e in scene.events:
        phrase = event_phrase(scene, e)
        if e.kind == "appear":
            t = scene.tracks[e.track]
            phrase = f"{_a(t.colour + ' ' + t.shape)} appears {_location(POSITIONS[t.cell])}"
        sentences.append(f"At {fmt_time(e.time)} {phrase}.")
    return " ".join(sentences)


# ---------------------------------------------------------------------------------------------- image QA
def image_questions(scene: ImageScene, rng: np.random.Generator) -> list[QA]:
    """Every question this image supports (a random subset is used per conversation)."""
    if scene.kind == "chart":
        return _chart_questions(scene, rng)
    if scene.kind == "text":
        t = scene.text
        q = _template(rng, "What word is written in the image?", "What does the text say?", "Read the word.")
        return [
            QA(q, t.word, "text"),
            _mc(rng, "Which word is written in the image?", t.word, list(WORDS), "text"),
            QA(_template(rng, "What colour is the text?", "What colour is the word?"), t.colour, "text_colour"),
        ]
    if scene.kind == "count":
        return _count_questions(scene, rng)
    return _object_questions(scene, rng)


def _object_questions(scene: ImageScene, rng: np.random.Generator) -> list[QA]:
    """Colour, shape, position, size and existence of the one object."""
    o = scene.shapes[0]
    q = _template(
        rng, "What colour is the object?", f"What colour is the {o.shape}?", "What is the colour of the shape?"
    )
    out = [QA(q, o.colour, "colour"), _mc(rng, "What colour is the object?", o.colour, list(COLOURS), "colour")]
    q = _template(rng, "What shape is the object?", f"What shape is the {o.colour} object?", "Which shape is shown?")
    out += [QA(q, o.shape, "shape"), _mc(rng, "What shape is the object?", o.shape, list(SHAPES), "shape")]
    q = _template(
        rng, "Where is the object?", f"Where is the {o.colour} {o.shape}?", f"Where is the {o.shape} located?"
    )
    out += [
        QA(q, o.position, "position"),
        _mc(rng, "Where is the object?", o.position, list(POSITIONS.values()), "position"),
    ]
    q = _template(rng, "Is the object small or large?", f"What size is the {o.shape}?")
    out.append(QA(q, o.size, "size"))
    if rng.random() < 0.5:
        out.append(QA(f"Is there {_a(o.colour + ' ' + o.shape)}?", "yes", "exists"))
    else:
        colour, shape = o.colour, o.shape
        while (colour, shape) == (o.colour, o.shape):
            colour, shape = _pick(rng, list(COLOURS)), _pick(rng, SHAPES)
        out.append(QA(f"Is there {_a(colour + ' ' + shape)}?", "no", "exists"))
    return out


def _count_questions(scene: ImageScene, rng: np.random.Generator) -> list[QA]:
    """How many copies of the one object there are."""
    n, shape = len(scene.shapes), scene.shapes[0].shape
    q = _template(rng, "How many objects are there?", "How many shapes are in the image?", "Count the objects.")
    out = [
        QA(q, str(n), "count"),
        _mc(rng, "How many objects are there?", str(n), [str(k) for k in range(1, 7)], "count"),
        QA(f"How many {_plural(shape)} are there?", str(n), "count"),
    ]
    other = _pick(rng, [s for s in SHAPES if s != shape])
    out.append(QA(f"How many {_plural(other)} are there?", "0", "count"))
    return out


def _chart_questions(scene: ImageScene, rng: np.random.Generator) -> list[QA]:
    """Which bar is the tallest / shortest, and their values."""
    c = scene.chart
    tallest, shortest = int(np.argmax(c.values)), int(np.argmin(c.values))
    values = [str(k) for k in range(1, 10)]
    return [
        QA(_template(rng, "Which bar is the tallest?", "Which bar has the highest value?"), c.labels[tallest], "chart_compare"),
        QA(_template(rng, "Which bar is the shortest?", "Which bar has the lowest value?"), c.labels[shortest], "chart_compare"),
        QA(_template(rng, "What is the value of the tallest bar?", "What is the highest value in the chart?"), str(c.values[tallest]), "chart_value"),
        QA(_template(rng, "What is the value of the shortest bar?", "What is the lowest value in the chart?"), str(c.values[shortest]), "chart_value"),
        _mc(rng, "What is the value of the tallest bar?", str(c.values[tallest]), values, "chart_value"),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------- video QA
def video_questions(scene: VideoScene, rng: np.random.Generator) -> list[QA]:
    """Temporal questions: direction, when (in seconds), order of events, how many times, colour change."""
    out: list[QA] = []
    times_pool = [fmt_time(s) for s in range(scene.n_sampled_frames)]
    for i, track in enumerate(scene.tracks):
        name = scene.name(i)
        moves = scene.track_events(i, "move")
        if moves:
            d = moves[0].detail
            q = _template(rng, f"Which direction does {name} move?", f"In which direction does {name} move?")
            out.append(QA(q, d, "direction"))
            out.append(_mc(rng, f"Which direction does {name} move?", d, list(DIRECTIONS), "direction"))
        for kind, verb in (("appear", "appear"), ("disappear", "disappear")):
            for e in scene.track_events(i, kind):
                out.append(QA(f"When does {name} {verb}?", fmt_time(e.time), "when"))
                out.append(_mc(rng, f"When does {name} {verb}?", fmt_time(e.time), times_pool, "when"))
        changes = scene.track_events(i, "change")
        if len(changes) == 1:
            out.append(QA(f"When does {name} change colour?", fmt_time(changes[0].time), "when"))
            q = _template(rng, f"What colour does {name} turn into?", f"What colour does {name} change to?")
            out.append(QA(q, changes[0].detail, "colour_change"))
        if changes:
            out.append(QA(f"What colour is {name} at the start?", track.colour, "colour_change"))
            out.append(QA(f"What colour is {name} at the end?", changes[-1].detail, "colour_change"))
            q = f"How many times does {name} change colour?"
            out.append(QA(q, str(len(changes)), "times"))
        blinks = scene.track_events(i, "blink")
        if blinks or rng.random() < 0.15:
            q = _template(rng, f"How many times does {name} blink?", f"How many times does {name} disappear briefly?")
            out.append(QA(q, str(len(blinks)), "times"))
            if blinks:
                out.append(QA(f"When does {name} blink for the first time?", fmt_time(blinks[0].time), "when"))
    firsts = _first_events(scene)
    if len(firsts) >= 2:
        a, b = _pick(rng, firsts, size=2)
        first = a if a.time < b.time else b
        pa, pb = event_phrase(scene, a), event_phrase(scene, b)
        out.append(QA(f"Which happens first: {pa} or {pb}?", event_phrase(scene, first), "order"))
        options = [event_phrase(scene, e) for e in firsts]
        out.append(_mc(rng, "What happens first?", event_phrase(scene, firsts[0]), options, "order"))
        out.append(_mc(rng, "What happens last?", event_phrase(scene, firsts[-1]), options, "order"))
    return out


def _first_events(scene: VideoScene) -> list[Event]:
    """One event per track and kind (a blink train or double colour change counts once), in time order."""
    seen, out = set(), []
    for e in scene.events:
        if (e.track, e.kind) not in seen:
            seen.add((e.track, e.kind))
            out.append(e)
    return out


# ---------------------------------------------------------------------------------------------- text only
SIDES = {"triangle": 3, "square": 4, "diamond": 4}
MIXES = {("blue", "yellow"): "green", ("red", "yellow"): "orange", ("blue", "red"): "purple"}
OPPOSITES = {"left": "right", "right": "left", "up": "down", "down": "up", "top": "bottom", "bottom": "top"}


def text_questions(rng: np.random.Generator) -> list[QA]:
    """A few text-only instructions (stage 2-4 "text-only data"): arithmetic, comparison, facts, spelling."""
    a, b = (int(v) for v in rng.integers(0, 10, size=2))
    out = [
        QA(_template(rng, f"What is {a} plus {b}?", f"What is {a} + {b}?"), str(a + b), "arithmetic"),
        QA(f"What is {max(a, b)} minus {min(a, b)}?", str(max(a, b) - min(a, b)), "arithmetic"),
    ]
    if a != b:
        out.append(QA(f"Which number is larger, {a} or {b}?", str(max(a, b)), "compare"))
        out.append(QA(f"Which number is smaller, {a} or {b}?", str(min(a, b)), "compare"))
    shape = _pick(rng, list(SIDES))
    out.append(QA(f"How many sides does a {shape} have?", str(SIDES[shape]), "knowledge"))
    (c1, c2), mixed = list(MIXES.items())[int(rng.integers(len(MIXES)))]
    if rng.random() < 0.5:
        c1, c2 = c2, c1
    out.append(QA(f"What colour do you get by mixing {c1} and {c2}?", mixed, "knowledge"))
    word = _pick(rng, list(OPPOSITES))
    out.append(QA(f"What is the opposite of {word}?", OPPOSITES[word], "knowledge"))
    word = _pick(rng, WORDS)
    out.append(QA(f"What is the first letter of the word {word}?", word[0], "spelling"))
    out.append(QA(f"How many letters does the word {word} have?", str(len(word)), "spelling"))
    out.append(QA(f"Spell the word {word}.", "-".join(word), "spelling"))
    return out


def text_conversation(seed: int, index: int, turns: int = 3) -> list[QA]:
    """A text-only conversation of ``turns`` instructions."""
    rng = item_rng(seed, DOMAIN_TEXT, index)
    pool = text_questions(rng)
    return _pick(rng, pool, size=min(turns, len(pool)))


def select_questions(questions: list[QA], rng: np.random.Generator, k: int, balance: bool = True) -> list[QA]:
    """``k`` questions about distinct facts, spread over task types (a rare task is not drowned by a common one).

    One conversation never asks one fact twice (say "When does the star appear?" open, then as multiple
    choice): a model would learn to copy the earlier answer instead of looking, and a benchmark question is
    always asked alone."""
    unique = list({q.question + "|" + str(q.options): q for q in questions}.values())
    if k > 1:  # which form of a fact is kept is drawn; a single question (a benchmark's) is drawn as before
        unique = list({q.fact: q for q in _pick(rng, unique, size=len(unique))}.values())
    if not balance:
        return _pick(rng, unique, size=min(k, len(unique)))
    by_task: dict[str, list[QA]] = {}
    for q in unique:
        by_task.setdefault(q.task, []).append(q)
    chosen: list[QA] = []
    while len(chosen) < k and by_task:
        # One round: every remaining task once, in a random order.
        for task in _pick(rng, list(by_task), size=len(by_task)):
            pool = by_task[task]
            chosen.append(pool.pop(int(rng.integers(len(pool)))))
            if not pool:
                del by_task[task]
            if len(chosen) == k:
                break
    return chosen


def qa_rng(seed: int, index: int, salt: int) -> np.random.Generator:
    """Random stream for choosing the questions of one item (separate from the scene's own stream)."""
    return np.random.default_rng([int(seed), DOMAIN_QA, int(salt), int(index)])


# ---------------------------------------------------------------------------------------------- scoring
_ARTICLES = re.compile(r"^(the|a|an)\s+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def normalize(text: str) -> str:
    """Lower case, no surrounding punctuation / articles, single spaces."""
    text = text.strip().lower()
    text = re.sub(r"^(the answer is|answer:)\s*", "", text)
    text = re.sub(r"[\s]+", " ", text)
    text = text.strip(" .!?,;:\"'()")
    return _ARTICLES.sub("", text)


def score(qa: QA, prediction: str) -> bool:
    """Whether ``prediction`` answers ``qa``: letter for multiple choice, number for counts / values / times
    (times within half a second), normalised exact match otherwise."""
    pred = normalize(prediction)
    if qa.options:
        raw = re.sub(r"^(the answer is|answer:)\s*", "", prediction.strip(), flags=re.IGNORECASE)
        m = re.match(r"^\(?([A-Da-d])(?:$|[\s.):,])", raw)
        if m:
            return m.group(1).upper() == qa.answer
        # the option's text instead of its letter
        return pred == normalize(qa.options[LETTERS.index(qa.answer)])
    truth = normalize(qa.answer)
    if truth.endswith("s") and _NUMBER.fullmatch(truth[:-1]):  # a time in seconds
        m = _NUMBER.search(pred)
        return bool(m) and abs(float(m.group()) - float(truth[:-1])) < 0.5
    if _NUMBER.fullmatch(truth):
        m = _NUMBER.search(pred)
        return bool(m) and float(m.group()) == float(truth)
    return pred == truth
