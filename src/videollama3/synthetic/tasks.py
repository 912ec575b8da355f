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
VIDEO_TASKS = ("direction", "when", "order", "times", "colour_change", "video_count")
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
    parts = []
    if scene.kind == "chart":
        c = scene.chart
        values = _join([f"{label} is {value}" for label, value in zip(c.labels, c.values)])
        return f"A bar chart with {len(c.values)} {c.colour} bars: {values}."
    if scene.text is not None:
        t = scene.text
        parts.append(f'The word "{t.word}" is written in {t.colour} at the {ROW_NAMES[t.row]}.')
    if scene.shapes:
        objs = sorted(scene.shapes, key=lambda s: s.cell)
        items = [f"{_a(s.describe(with_size=True))} {_location(s.position)}" for s in objs]
        sentence = _join(items)
        prefix = "There is " if len(objs) == 1 else f"There are {len(objs)} objects: "
        parts.append(prefix + sentence + ".")
    return " ".join(parts)


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
    sentences = [f"At the start there is {things}." if len(start) == 1 else f"At the start there are {things}."]
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
    out: list[QA] = []
    if scene.text is not None:
        t = scene.text
        q = _template(rng, "What word is written in the image?", "What does the text say?", "Read the word.")
        out.append(QA(q, t.word, "text"))
        out.append(_mc(rng, "Which word is written in the image?", t.word, list(WORDS), "text"))
        q = _template(rng, "What colour is the text?", "What colour is the word?")
        out.append(QA(q, t.colour, "text_colour"))
    if scene.shapes:
        out.extend(_shape_questions(scene, rng))
    return out


def _shape_questions(scene: ImageScene, rng: np.random.Generator) -> list[QA]:
    objs = scene.shapes
    out: list[QA] = []
    shape_counts = {s: sum(o.shape == s for o in objs) for s in SHAPES}
    colour_counts = {c: sum(o.colour == c for o in objs) for c in COLOURS}
    pair_counts: dict[tuple[str, str], int] = {}
    for o in objs:
        pair_counts[(o.colour, o.shape)] = pair_counts.get((o.colour, o.shape), 0) + 1
    only_shapes = scene.text is None
    for o in objs:
        if shape_counts[o.shape] == 1:
            q = _template(rng, f"What colour is the {o.shape}?", f"What is the colour of the {o.shape}?")
            out.append(QA(q, o.colour, "colour"))
            out.append(_mc(rng, f"What colour is the {o.shape}?", o.colour, list(COLOURS), "colour"))
        if colour_counts[o.colour] == 1:
            q = _template(rng, f"What shape is the {o.colour} object?", f"Which shape is {o.colour}?")
            out.append(QA(q, o.shape, "shape"))
            out.append(_mc(rng, f"What shape is the {o.colour} object?", o.shape, list(SHAPES), "shape"))
        if pair_counts[(o.colour, o.shape)] == 1:
            q = _template(rng, f"Where is the {o.colour} {o.shape}?", f"Where is the {o.colour} {o.shape} located?")
            out.append(QA(q, o.position, "position"))
            out.append(
                _mc(rng, f"Where is the {o.colour} {o.shape}?", o.position, list(POSITIONS.values()), "position")
            )
            q = _template(
                rng, f"Is the {o.colour} {o.shape} small or large?", f"What size is the {o.colour} {o.shape}?"
            )
            out.append(QA(q, o.size, "size"))
    if only_shapes:
        n = len(objs)
        q = _template(rng, "How many objects are there?", "How many shapes are in the image?", "Count the objects.")
        out.append(QA(q, str(n), "count"))
        out.append(_mc(rng, "How many objects are there?", str(n), [str(k) for k in range(1, 8)], "count"))
        shape = _pick(rng, SHAPES)
        out.append(QA(f"How many {_plural(shape)} are there?", str(shape_counts[shape]), "count"))
        colour = _pick(rng, list(COLOURS))
        out.append(QA(f"How many {colour} objects are there?", str(colour_counts[colour]), "count"))
        present = _pick(rng, objs)
        out.append(QA(f"Is there a {present.colour} {present.shape}?", "yes", "exists"))
        absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in pair_counts]
        colour, shape = absent[int(rng.integers(len(absent)))]
        out.append(QA(f"Is there a {colour} {shape}?", "no", "exists"))
    return out


def _chart_questions(scene: ImageScene, rng: np.random.Generator) -> list[QA]:
    c = scene.chart
    out: list[QA] = []
    for label, value in zip(c.labels, c.values):
        q = _template(rng, f"What is the value of bar {label}?", f"What value does bar {label} show?")
        out.append(QA(q, str(value), "chart_value"))
    label = _pick(rng, c.labels)
    value = c.values[c.labels.index(label)]
    out.append(
        _mc(rng, f"What is the value of bar {label}?", str(value), [str(k) for k in range(1, 10)], "chart_value")
    )
    tallest = c.labels[int(np.argmax(c.values))]
    shortest = c.labels[int(np.argmin(c.values))]
    out.append(
        QA(_template(rng, "Which bar is the tallest?", "Which bar has the highest value?"), tallest, "chart_compare")
    )
    out.append(
        QA(_template(rng, "Which bar is the shortest?", "Which bar has the lowest value?"), shortest, "chart_compare")
    )
    out.append(QA("How many bars are in the chart?", str(len(c.values)), "count"))
    return out


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
    n = len(scene.tracks)
    out.append(QA("How many objects appear in the video?", str(n), "video_count"))
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
    """``k`` questions with distinct texts, spread over task types (a rare task is not drowned by a common one)."""
    unique = list({q.question + "|" + str(q.options): q for q in questions}.values())
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
