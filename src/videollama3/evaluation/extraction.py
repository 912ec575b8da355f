"""Reading answers out of free-form model responses.

Every extractor returns None when it cannot find an answer: the caller counts the sample as
unparseable (and wrong). Nothing here ever guesses (the official MMMU code, for one, picks a random
option; that makes scores irreproducible and is not done here).

The multiple-choice extractor tries, in order, the readings least likely to be wrong:

1. the whole response is a letter: ``A``, ``(b)``, ``C.``, ``[D]``;
2. a letter after an answer marker: ``Answer: A``, ``The answer is B``, ``option C``,
   ``The correct answer is (D) blue`` (a lowercase letter followed by a word, as in
   ``the answer is a dog``, is an article, not a letter);
3. a letter opening the response: ``A. blue``, ``(B) red``, ``C: ...``, ``D because...``;
4. a bracketed capital letter anywhere: ``... so (C) is right``;
5. a lone capital letter anywhere (``A`` and ``I`` only when not used as words);
6. the text of an option instead of its letter (``blue`` for ``(B) blue``; ``3`` and ``three`` match).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}

_THINK_END = re.compile(r"</think>", re.I)
_MARKDOWN = re.compile(r"[*_`#]+")
_MARKER_LETTER = re.compile(
    r"\b(?:answer|option|choice)s?\b"  # the marker
    r"(?:\s+(?:is|would\s+be|should\s+be|will\s+be|must\s+be|=))?"  # "is", "would be"...
    r"\s*[:\-]?\s*"
    r"(?:(?:option|choice|letter)\s+)?"  # "the answer is option B"
    r"[\(\[]?([A-Za-z])(?![A-Za-z0-9'])(\s*[\)\]])?",
    re.I,
)
_LEADING_LETTER_PUNCT = re.compile(r"^[\(\[]?([A-Za-z])\s*[\)\]\.:](?![A-Za-z0-9])")
_LEADING_LETTER_SPACE = re.compile(r"^([A-Z])(\s+)(\S.*)?$", re.S)
_BRACKETED_LETTER = re.compile(r"[\(\[]([A-Z])[\)\]]")
_LONE_CAPITAL = re.compile(r"(?<![A-Za-z0-9'\-])([A-Z])(?![A-Za-z0-9'\-])")
_WORD_AFTER = re.compile(r"\s+[a-z]")


def clean_response(response: str) -> str:
    """The part of a response that holds the answer: after a reasoning block, without markdown."""
    parts = _THINK_END.split(response)
    text = parts[-1] if len(parts) > 1 else response
    return _MARKDOWN.sub("", text).strip().strip("\"'").strip()


def normalize_text(text: str) -> str:
    """Lowercase, punctuation to spaces (decimal points kept), number words to digits, single spaces."""
    text = text.lower()
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)
    text = re.sub(r"[^\w\s.%]", " ", text)
    words = [_NUMBER_WORDS.get(w, w) for w in text.split()]
    return " ".join(words)


def extract_choice(
    response: str | None, options: Sequence[str] | None = None, letters: str | None = None
) -> str | None:
    """The letter of the option a response chooses, or None.

    Args:
        response: the model's answer.
        options: the option texts (option i has letter ``letters[i]``), used to read answers given as
            text and to tell the article "A" from option A.
        letters: the valid letters (default: A, B, ... one per option, or A-Z without options).
    """
    if response is None:
        return None
    if letters is None:
        letters = LETTERS[: len(options)] if options else LETTERS
    options = list(options or [])
    valid = set(letters.upper())
    text = clean_response(response)
    if not text:
        return None

    # 1. the whole response is one letter, possibly bracketed or followed by a period.
    whole = re.fullmatch(r"[\(\[]?\s*([A-Za-z])\s*[\)\]]?\s*[\.:,]?", text)
    if whole and whole.group(1).upper() in valid:
        return whole.group(1).upper()

    # 2. a letter after an answer marker.
    for match in _MARKER_LETTER.finditer(text):
        letter = match.group(1)
        if letter.upper() not in valid:
            continue
        bracketed = match.group(2) is not None or text[match.start(1) - 1 : match.start(1)] in "(["
        followed_by_word = _WORD_AFTER.match(text, match.end(1)) is not None
        # "the answer is a dog": a lowercase letter followed by a word is an article, not an option.
        if letter.islower() and followed_by_word and not bracketed:
            continue
        # "The answer is A man riding": a capital A/I followed by a lowercase word reads as a word too,
        # unless what follows is option A's own text.
        if letter in "AI" and followed_by_word and not bracketed:
            rest = text[match.end(1) :]
            if not _starts_with_option(rest, options, letters, letter):
                continue
        return letter.upper()

    # 3. a letter opening the response: "A. ...", "(B) ...", "c) ...", "D because ...".
    lead = _LEADING_LETTER_PUNCT.match(text)
    if lead and lead.group(1).upper() in valid:
        return lead.group(1).upper()
    lead = _LEADING_LETTER_SPACE.match(text)
    if lead and lead.group(1) in valid:
        letter, rest = lead.group(1), lead.group(3) or ""
        as_word = letter in "AI" and rest[:1].islower()
        if not as_word or _starts_with_option(rest, options, letters, letter):
            return letter

    # 4. a bracketed capital letter anywhere.
    for match in _BRACKETED_LETTER.finditer(text):
        if match.group(1) in valid:
            return match.group(1)

    # 5. a lone capital letter anywhere ("I'd go with B"), skipping the words "A" and "I".
    for match in _LONE_CAPITAL.finditer(text):
        letter = match.group(1)
        if letter not in valid:
            continue
        if letter in "AI" and _WORD_AFTER.match(text, match.end(1)):
            continue
        return letter

    # 6. the text of an option.
    return _match_option_text(text, options, letters)


def _starts_with_option(rest: str, options: list[str], letters: str, letter: str) -> bool:
    index = letters.upper().find(letter)
    if not options or index < 0 or index >= len(options):
        return False
    option = normalize_text(options[index])
    return bool(option) and normalize_text(rest).startswith(option)


def _match_option_text(text: str, options: list[str], letters: str) -> str | None:
    """The option whose text the response gives: equal, contained (one, or one containing the others)."""
    if not options:
        return None
    response = normalize_text(text)
    if not response:
        return None
    normalized = [normalize_text(str(o)) for o in options]
    equal = [i for i, o in enumerate(normalized) if o and o == response]
    if len(equal) == 1:
        return letters[equal[0]].upper()
    contained = [i for i, o in enumerate(normalized) if o and re.search(rf"(?<!\w){re.escape(o)}(?!\w)", response)]
    if len(contained) == 1:
        return letters[contained[0]].upper()
    if len(contained) > 1:
        # "dark blue" also contains "blue": the longest wins when it contains every other match.
        longest = max(contained, key=lambda i: len(normalized[i]))
        if all(normalized[i] in normalized[longest] for i in contained):
            return letters[longest].upper()
        return None
    within = [i for i, o in enumerate(normalized) if re.search(rf"(?<!\w){re.escape(response)}(?!\w)", o)]
    if len(within) == 1:
        return letters[within[0]].upper()
    return None


# --------------------------------------------------------------------------------------------------
# Yes / no
# --------------------------------------------------------------------------------------------------


def extract_yes_no(response: str | None) -> str | None:
    """``"yes"`` or ``"no"``: the first word if it is one, else the only one of the two present."""
    if response is None:
        return None
    text = clean_response(response).lower()
    words = re.findall(r"[a-z']+", text)
    if not words:
        return None
    if words[0] in ("yes", "no"):
        return words[0]
    found = {w for w in words if w in ("yes", "no")}
    return found.pop() if len(found) == 1 else None


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])|(?<![\w.])[-+]?\.\d+"
)
_FRACTION = re.compile(r"(?<![\w./])([-+]?\d+)\s*/\s*(\d+)(?![\w./])")
_ANSWER_IS = re.compile(r"(?:answer|result)\s*(?:is|:|=)|final answer|therefore|thus|so the", re.I)


def parse_number(text: str) -> float | None:
    """``text`` as a number (``"1,000"``, ``"35%"`` -> 35, ``"3/4"``), or None."""
    text = text.strip().rstrip(".").replace("$", "").strip()
    if text.endswith("%"):
        text = text[:-1]
    fraction = re.fullmatch(r"([-+]?\d+)\s*/\s*(\d+)", text)
    if fraction and int(fraction.group(2)) != 0:
        return int(fraction.group(1)) / int(fraction.group(2))
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def extract_numbers(text: str) -> list[float]:
    """Every number in ``text``, in order (thousands separators and fractions understood)."""
    found: list[tuple[int, float]] = []
    spans = []
    for match in _FRACTION.finditer(text):
        if int(match.group(2)) != 0:
            found.append((match.start(), int(match.group(1)) / int(match.group(2))))
            spans.append(match.span())
    for match in _NUMBER.finditer(text):
        if any(s <= match.start() < e for s, e in spans):
            continue
        found.append((match.start(), float(match.group(0).replace(",", ""))))
    return [value for _, value in sorted(found)]


def extract_final_number(response: str | None) -> float | None:
    """The number a response settles on: the first after "the answer is" (etc.), else the last one."""
    if response is None:
        return None
    text = clean_response(response)
    markers = list(_ANSWER_IS.finditer(text))
    if markers:
        numbers = extract_numbers(text[markers[-1].end() :])
        if numbers:
            return numbers[0]
    numbers = extract_numbers(text)
    return numbers[-1] if numbers else None


# --------------------------------------------------------------------------------------------------
# Time intervals
# --------------------------------------------------------------------------------------------------

_CLOCK = re.compile(r"(?<![\d.:])(?:(\d{1,2}):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)(?![\d:])")
_SECONDS_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_UNIT = r"(?:\s*(?:s|sec|secs|second|seconds)\b)?"
_INTERVAL = re.compile(
    _SECONDS_NUMBER + _UNIT + r"\s*(?:-|–|—|~|to|and|until|till|,)\s*" + _SECONDS_NUMBER + _UNIT,
    re.I,
)


def _clock_to_seconds(match: re.Match) -> str:
    hours = int(match.group(1) or 0)
    return f"{hours * 3600 + int(match.group(2)) * 60 + float(match.group(3)):g}"


def extract_intervals(response: str | None) -> list[tuple[float, float]] | None:
    """Time intervals in seconds: ``1.5-3.0 s``, ``from 1.5s to 3s``, ``00:01-00:03``, ``[1.5, 3.0]``...

    Clock times (``MM:SS``, ``HH:MM:SS(.f)``) become seconds first. Without an explicit pair, the numbers
    are paired in order (dropping the first of an odd count), as the official Charades-STA code does.
    Returns None when no interval can be read.
    """
    if response is None:
        return None
    text = _CLOCK.sub(_clock_to_seconds, clean_response(response))
    pairs = [(float(a), float(b)) for a, b in _INTERVAL.findall(text)]
    if not pairs:
        numbers = [float(x) for x in re.findall(_SECONDS_NUMBER, text)]
        if len(numbers) % 2:
            numbers = numbers[1:]
        pairs = [(numbers[i], numbers[i + 1]) for i in range(0, len(numbers), 2)]
    return pairs or None
