"""The synthetic visual world: what is in an image or a video, as plain data, sampled deterministically.

A *scene* says everything that is true about one image (objects on a 3 x 3 grid, a rendered word, a bar
chart) or one video (objects that move, appear, disappear, change colour or blink at known whole seconds,
with static stretches in between). Rendering (``render.py``) turns scenes into pixels; ``tasks.py`` turns
them into captions and question-answer pairs. Because the truth is known exactly, every answer is right by
construction, and held-out benchmarks are just new seeds.

Determinism: every scene is sampled from its own ``numpy.random.Generator`` seeded with
``(seed, domain, index)`` (see :func:`item_rng`), so item ``i`` of seed ``s`` is the same whatever the
number of items generated, the order or the process that generates it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# ---------------------------------------------------------------------------------------------- vocabulary
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 165, 50),
    "blue": (30, 75, 225),
    "yellow": (240, 205, 20),
    "purple": (145, 50, 175),
    "orange": (250, 130, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star")
SIZES: tuple[str, ...] = ("small", "large")
# (row, col) on the 3 x 3 grid -> name used in captions and answers
POSITIONS: dict[tuple[int, int], str] = {
    (0, 0): "top left",
    (0, 1): "top",
    (0, 2): "top right",
    (1, 0): "left",
    (1, 1): "center",
    (1, 2): "right",
    (2, 0): "bottom left",
    (2, 1): "bottom",
    (2, 2): "bottom right",
}
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
WORDS: tuple[str, ...] = (
    "apple", "house", "river", "cloud", "tree", "book", "fish", "bird", "cake", "lamp", "door", "ship",
    "rain", "snow", "leaf", "rock", "milk", "king", "road", "wolf", "bell", "frog", "corn", "kite",
    "hat", "cup", "pen", "key", "map", "egg", "owl", "fox",
)  # fmt: skip
ROW_NAMES: tuple[str, ...] = ("top", "middle", "bottom")
BAR_LABELS: tuple[str, ...] = ("A", "B", "C")  # one bar per column of the grid
# Image backgrounds (light and dark) and the text colours readable on each.
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((242, 242, 242), (228, 226, 214), (205, 214, 228), (48, 50, 60))
VIDEO_BACKGROUND: tuple[int, int, int] = (236, 236, 232)

# "object": one object to describe; "count": 1-6 copies of one object to count; "text": one rendered word;
# "chart": a bar chart. Every image question is about the one thing the image shows (see docs/experiments.md:
# finding one object among several by a named attribute is what a model of this size does not learn in the
# recipe's budget, so questions never need it).
IMAGE_KINDS: tuple[str, ...] = ("object", "count", "text", "chart")
IMAGE_KIND_WEIGHTS: tuple[float, ...] = (0.35, 0.2, 0.25, 0.2)
EVENT_KINDS: tuple[str, ...] = ("move", "appear", "disappear", "change", "blink")
# A move takes 1.5 s: a reader sampling 1 fps sees it half-way in one frame and finished in the next.
MOVE_SECONDS = 1.5

# Domains of the per-item random streams (never reuse a number: it would correlate two datasets).
DOMAIN_IMAGE, DOMAIN_VIDEO, DOMAIN_TEXT, DOMAIN_QA = 1, 2, 3, 4


def item_rng(seed: int, domain: int, index: int) -> np.random.Generator:
    """The random stream of one item: independent of how many items are generated, and in which order."""
    return np.random.default_rng([int(seed), int(domain), int(index)])


def _pick(rng: np.random.Generator, seq, size: int | None = None, replace: bool = False):
    """``rng.choice`` that returns Python objects (not numpy scalars), for JSON and string formatting."""
    seq = list(seq)
    if size is None:
        return seq[int(rng.integers(len(seq)))]
    return [seq[i] for i in rng.choice(len(seq), size=size, replace=replace)]


# ---------------------------------------------------------------------------------------------- images
@dataclass
class Shape:
    """One object on the grid. ``x``, ``y`` (centre) and ``radius`` are fractions of the image side."""

    shape: str
    colour: str
    size: str
    cell: tuple[int, int]
    x: float
    y: float

    @property
    def radius(self) -> float:
        return 0.085 if self.size == "small" else 0.135

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]

    def describe(self, with_size: bool = False) -> str:
        words = ([self.size] if with_size else []) + [self.colour, self.shape]
        return " ".join(words)


@dataclass
class TextItem:
    """A rendered word. ``row`` is 0 (top), 1 (middle) or 2 (bottom); ``x`` is the centre (fraction)."""

    word: str
    colour: str  # a COLOURS name, or "black" / "white"
    row: int
    x: float
    rgb: tuple[int, int, int]


@dataclass
class Chart:
    """A vertical bar chart with a value label above every bar."""

    labels: list[str]
    values: list[int]
    colour: str


@dataclass
class ImageScene:
    kind: str  # one of IMAGE_KINDS
    background: tuple[int, int, int]
    shapes: list[Shape] = field(default_factory=list)
    text: TextItem | None = None
    chart: Chart | None = None


def _cell_centre(rng: np.random.Generator, cell: tuple[int, int], jitter: float = 0.02) -> tuple[float, float]:
    row, col = cell
    x = (col + 0.5) / 3 + float(rng.uniform(-jitter, jitter))
    y = (row + 0.5) / 3 + float(rng.uniform(-jitter, jitter))
    return x, y


def sample_shapes(rng: np.random.Generator, n: int, cells: list[tuple[int, int]] | None = None) -> list[Shape]:
    """``n`` copies of one object (shape, colour and size) in distinct grid cells."""
    cells = cells or _pick(rng, list(POSITIONS), size=n)
    shape, colour, size = _pick(rng, SHAPES), _pick(rng, COLOURS), _pick(rng, SIZES)
    return [Shape(shape, colour, size, tuple(cell), *_cell_centre(rng, cell)) for cell in cells]


def sample_image_scene(seed: int, index: int, kind: str | None = None) -> ImageScene:
    """Image ``index`` of the world with ``seed``: one object, copies of one object, a word or a bar chart."""
    rng = item_rng(seed, DOMAIN_IMAGE, index)
    if kind is None:
        kind = str(rng.choice(IMAGE_KINDS, p=IMAGE_KIND_WEIGHTS))
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    dark = sum(background) < 300
    if kind == "object":
        return ImageScene(kind, background, shapes=sample_shapes(rng, 1))
    if kind == "count":
        return ImageScene(kind, background, shapes=sample_shapes(rng, int(rng.integers(1, 7))))
    if kind == "text":
        word = _pick(rng, WORDS)
        names = [*COLOURS, "white" if dark else "black"]
        colour = _pick(rng, names)
        rgb = COLOURS.get(colour, (255, 255, 255) if colour == "white" else (0, 0, 0))
        row = int(rng.integers(3))
        return ImageScene(kind, background, text=TextItem(word, colour, row, 0.5 + float(rng.uniform(-0.1, 0.1)), rgb))
    if kind == "chart":
        values = [int(v) for v in rng.integers(1, 10, size=len(BAR_LABELS))]
        while len(set(values)) < len(values):  # distinct values: tallest and shortest are unambiguous
            values = [int(v) for v in rng.integers(1, 10, size=len(BAR_LABELS))]
        return ImageScene(kind, (242, 242, 242), chart=Chart(list(BAR_LABELS), values, _pick(rng, COLOURS)))
    raise ValueError(f"unknown image kind {kind!r}: expected one of {IMAGE_KINDS}")


# ---------------------------------------------------------------------------------------------- videos
@dataclass
class Event:
    """Something that happens to one track at whole second ``time`` (the first sampled frame showing it).

    kinds: ``move`` (``detail`` = direction; the motion spans [time, time + 1.5]), ``appear``,
    ``disappear``, ``change`` (``detail`` = the new colour), ``blink`` (hidden during [time, time + 1)).
    """

    time: int
    kind: str
    track: int
    detail: str = ""


@dataclass
class Track:
    """One object of a video: its start state and its timeline of events."""

    shape: str
    colour: str  # initial colour
    size: str
    cell: tuple[int, int]
    x: float
    y: float
    visible_at_start: bool = True

    @property
    def radius(self) -> float:
        return 0.085 if self.size == "small" else 0.135


@dataclass
class ObjectState:
    shape: str
    colour: str
    size: str
    x: float
    y: float
    visible: bool

    @property
    def radius(self) -> float:
        return 0.085 if self.size == "small" else 0.135


@dataclass
class VideoScene:
    """A video: ``duration`` seconds, rendered at ``fps``; every event happens at a whole second.

    A 1 fps reader (ffmpeg's ``fps=1:round=down``, as the processor samples) labels ``Time T.0s`` the last
    frame shown before T + 1, so a change at whole second T first shows in the frame labelled T (and so
    it would with any reader that takes one frame from [T, T + 1)).
    """

    duration: int
    fps: int
    background: tuple[int, int, int]
    tracks: list[Track]
    events: list[Event]

    def track_events(self, track: int, kind: str | None = None) -> list[Event]:
        return [e for e in self.events if e.track == track and (kind is None or e.kind == kind)]

    def name(self, track: int) -> str:
        """How questions refer to a track: ``the red circle``, or ``the circle`` if its colour changes."""
        t = self.tracks[track]
        if self.track_events(track, "change"):
            return f"the {t.shape}"
        return f"the {t.colour} {t.shape}"

    def state_at(self, time: float) -> list[ObjectState]:
        """Every track at ``time`` seconds (an event at second T is in effect from T on)."""
        out = []
        for i, t in enumerate(self.tracks):
            visible = t.visible_at_start
            colour = t.colour
            x, y = t.x, t.y
            for e in sorted(self.track_events(i), key=lambda e: e.time):
                if e.kind == "appear" and time >= e.time:
                    visible = True
                elif e.kind == "disappear" and time >= e.time:
                    visible = False
                elif e.kind == "change" and time >= e.time:
                    colour = e.detail
                elif e.kind == "blink" and e.time <= time < e.time + 1:
                    visible = False
                elif e.kind == "move":
                    dr, dc = DIRECTIONS[e.detail]
                    progress = min(max((time - e.time) / MOVE_SECONDS, 0.0), 1.0)
                    x += dc / 3 * progress
                    y += dr / 3 * progress
            out.append(ObjectState(t.shape, colour, t.size, x, y, visible))
        return out

    @property
    def n_sampled_frames(self) -> int:
        """Frames a 1 fps reader gets: one at each whole second in [0, duration)."""
        return self.duration


def _event_slots(kind: str, time: int, count: int = 1) -> set[int]:
    """Whole seconds whose sampled frame an event changes (events may not share one)."""
    if kind == "move":
        return {time, time + 1}
    if kind == "blink":
        return {time + 2 * k for k in range(count)} | {time + 2 * k + 1 for k in range(count)}
    return {time}


def sample_video_scene(seed: int, index: int, duration: int | None = None, fps: int = 8) -> VideoScene:
    """Video ``index`` of the world with ``seed``: one object to which 1-3 things of different kinds happen.

    Events occupy distinct whole seconds in [1, duration - 1] (so "what happens first" always has an
    answer, and each change is visible in exactly one sampled frame), and the frames in between are static.
    """
    rng = item_rng(seed, DOMAIN_VIDEO, index)
    if duration is None:
        duration = int(rng.integers(6, 9))
    cell = _pick(rng, list(POSITIONS))
    x, y = _cell_centre(rng, cell)
    track = Track(_pick(rng, SHAPES), _pick(rng, COLOURS), _pick(rng, SIZES), tuple(cell), x, y)
    tracks = [track]

    occupied = {track.cell}
    busy: set[int] = set()
    events: list[Event] = []
    kinds_weights = np.array([0.3, 0.15, 0.15, 0.22, 0.18])
    kinds = [str(k) for k in rng.choice(EVENT_KINDS, size=3, replace=False, p=kinds_weights / kinds_weights.sum())]
    kinds = kinds[: int(rng.integers(1, 4))]
    if "appear" in kinds and "disappear" in kinds:  # one or the other: the object is hidden at one end only
        kinds.remove("disappear")
    # Appearing or disappearing comes first in sampling (early or late), so that every other event happens
    # while the object is visible: in the window (lo, hi) of whole seconds.
    kinds.sort(key=lambda k: k not in ("appear", "disappear"))
    window = (1, duration)
    for kind in kinds:
        if kind == "appear":
            made = _sample_event(rng, kind, 0, tracks, duration, busy, occupied, window=(1, max(2, duration // 2)))
            window = (made[0].time + 1, duration)
        elif kind == "disappear":
            made = _sample_event(rng, kind, 0, tracks, duration, busy, occupied, window=(duration // 2, duration))
            window = (1, made[0].time)
        else:
            made = _sample_event(rng, kind, 0, tracks, duration, busy, occupied, window=window)
        if not made:
            continue
        events.extend(made)
        for e in made:
            busy |= _event_slots(e.kind, e.time)
    if not events:  # always at least one thing happens: a colour change fits anywhere
        events = _sample_event(rng, "change", 0, tracks, duration, busy, occupied) or []
    events.sort(key=lambda e: e.time)
    return VideoScene(duration, fps, VIDEO_BACKGROUND, tracks, events)


def _sample_event(rng, kind, track, tracks, duration, busy, occupied, window=None) -> list[Event] | None:
    """Events of ``kind`` for ``track`` at free whole seconds in ``window`` = [lo, hi) (default [1, duration))."""
    t = tracks[track]
    lo, hi = window or (1, duration)
    free_times = [s for s in range(max(1, lo), min(hi, duration)) if s not in busy]
    if kind == "move":
        options = []
        for direction, (dr, dc) in DIRECTIONS.items():
            target = (t.cell[0] + dr, t.cell[1] + dc)
            if target in POSITIONS and target not in occupied:
                options.append((direction, target))
        times = [s for s in free_times if s + 1 < min(hi, duration) and s + 1 not in busy]
        if not options or not times:
            return None
        direction, target = options[int(rng.integers(len(options)))]
        occupied.add(target)
        return [Event(_pick(rng, times), "move", track, direction)]
    if kind in ("appear", "disappear"):
        if not free_times:
            return None
        if kind == "appear":
            t.visible_at_start = False
        return [Event(_pick(rng, free_times), kind, track)]
    if kind == "change":
        count = 1 if rng.random() < 0.7 else 2
        if len(free_times) < count:
            return None
        times = sorted(_pick(rng, free_times, size=count))
        events, colour = [], t.colour
        for s in times:
            colour = _pick(rng, [c for c in COLOURS if c != colour])
            events.append(Event(s, "change", track, colour))
        return events
    if kind == "blink":
        count = int(rng.integers(1, 4))
        starts = [s for s in free_times if all(s + k in free_times for k in range(2 * count))]
        if not starts and count > 1:
            count = 1
            starts = [s for s in free_times if s + 1 in free_times]
        if not starts:
            return None
        start = _pick(rng, starts)
        return [Event(start + 2 * k, "blink", track) for k in range(count)]
    raise ValueError(f"unknown event kind {kind!r}")


def frame_times(duration: int, fps: int) -> list[float]:
    """Presentation times of the rendered frames."""
    return [i / fps for i in range(int(math.ceil(duration * fps)))]
