"""Answer extraction against a table of real-style model outputs; unreadable answers give None."""

from __future__ import annotations

import pytest

from videollama3.evaluation.extraction import (
    extract_choice,
    extract_final_number,
    extract_intervals,
    extract_numbers,
    extract_yes_no,
    parse_number,
)

OPTIONS = ["red", "blue", "green", "a man is cooking"]

CHOICES = [
    # letters in many forms
    ("A", "A"),
    ("B.", "B"),
    ("(C)", "C"),
    ("[D]", "D"),
    ("b", "B"),
    ("(c)", "C"),
    ("d.", "D"),
    ("  A  ", "A"),
    ("**B**", "B"),
    ("Answer: A", "A"),
    ("Answer: (c)", "C"),
    ("answer is b.", "B"),
    ("The answer is B", "B"),
    ("The answer is B.", "B"),
    ("The best answer is: D", "D"),
    ("The correct option is (A).", "A"),
    ("The answer is (D) blue", "D"),
    ("The answer is option C", "C"),
    ("option C", "C"),
    ("Option (B)", "B"),
    ("Choice: A", "A"),
    ("B. blue", "B"),
    ("(B) blue", "B"),
    ("C) green", "C"),
    ("C: green", "C"),
    ("D because the man is cooking", "D"),
    ("A\nBecause it is red.", "A"),
    ("I think the answer is C.", "C"),
    ("I would go with B", "B"),
    ("Looking at the video, (C) is right.", "C"),
    ("<think>maybe A or B</think>C", "C"),
    # option text instead of a letter
    ("blue", "B"),
    ("Blue.", "B"),
    ("The car is green!", "C"),
    ("A man is cooking.", "D"),  # the article "A", not option A
    ("a man is cooking", "D"),
    # unreadable: counted, never guessed
    ("The answer is a dog", None),
    ("I don't know", None),
    ("None of the above", None),
    ("red or blue", None),
    ("E", None),  # not an option
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("response", "expected"), CHOICES)
def test_extract_choice(response, expected):
    assert extract_choice(response, OPTIONS) == expected


def test_extract_choice_number_words_and_custom_letters():
    assert extract_choice("three", ["1", "2", "3"]) == "C"
    assert extract_choice("The answer is 3", ["1", "2", "three"]) == "C"
    assert extract_choice("Caption B", ["fast", "slow"], letters="AB") == "B"
    assert extract_choice("E", letters="ABCDE") == "E"  # without option texts
    assert extract_choice("dark blue", ["blue", "dark blue"]) == "B"  # the longest containing match


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("1.5-3.0 s", [(1.5, 3.0)]),
        ("1.5 - 3.0 seconds", [(1.5, 3.0)]),
        ("from 1.5s to 3s", [(1.5, 3.0)]),
        ("The event happens from 1.5 to 3.0 seconds.", [(1.5, 3.0)]),
        ("between 2 and 4.5 seconds", [(2.0, 4.5)]),
        ("00:01-00:03", [(1.0, 3.0)]),
        ("0:05 - 0:12.5", [(5.0, 12.5)]),
        ("00:00:01.5 to 00:00:03", [(1.5, 3.0)]),
        ("01:02:03 - 01:02:05", [(3723.0, 3725.0)]),
        ("[1.5, 3.0]", [(1.5, 3.0)]),
        ("(12.3, 20.1)", [(12.3, 20.1)]),
        ("1.0-2.0 s and 5.0-6.0 s", [(1.0, 2.0), (5.0, 6.0)]),
        ("start 4, end 9", [(4.0, 9.0)]),
        ("no idea", None),
        ("at 5 s", None),
        (None, None),
    ],
)
def test_extract_intervals(response, expected):
    assert extract_intervals(response) == expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Yes", "yes"),
        ("no.", "no"),
        ("Yes, there is a dog.", "yes"),
        ("The answer is no", "no"),
        ("NO", "no"),
        ("yes and no", "yes"),
        ("maybe", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_yes_no(response, expected):
    assert extract_yes_no(response) == expected


def test_numbers():
    assert extract_final_number("3 + 9, so the answer is 12.") == 12
    assert extract_final_number("The total is 1,234 people") == 1234
    assert extract_final_number("It is 3/4 of the pie") == 0.75
    assert extract_final_number("x = -2.5") == -2.5
    assert extract_final_number("no number") is None
    assert extract_numbers("from 1.5 to 2e3 and 7") == [1.5, 2000.0, 7.0]
    assert parse_number("35%") == 35 and parse_number("$1,000.") == 1000 and parse_number("abc") is None
