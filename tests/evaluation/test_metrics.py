"""The metric functions against hand-computed values and the official definitions."""

from __future__ import annotations

import pytest

from videollama3.evaluation.metrics import (
    anls,
    grounding_metrics,
    interval_iou,
    levenshtein,
    mme_scores,
    mmmu_eval_open,
    mmmu_parse_choice,
    mmmu_parse_open,
    ocrbench_match,
    relaxed_correctness,
    vqa_exact_match,
)


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("same", "same") == 0


def test_anls_threshold_and_normalization():
    assert anls("Smith", ["smith"]) == 1.0
    assert anls("  Mr.   Smith ", ["mr. smith"]) == 1.0  # case and whitespace
    assert anls("1234", ["1235"]) == pytest.approx(0.75)  # distance 1 / 4
    assert anls("ab", ["abcd"]) == 0.0  # distance 2 / 4 = 0.5: not below the threshold
    assert anls("abc", ["abcd"]) == pytest.approx(0.75)
    assert anls("x", ["nope", "x"]) == 1.0  # best over the answers
    assert anls("", [""]) == 1.0


def test_relaxed_correctness():
    assert relaxed_correctness("10", "10.5")  # 5% exactly
    assert not relaxed_correctness("10", "10.6")
    assert relaxed_correctness("0.5", "50%")  # percentages / 100
    assert relaxed_correctness("Yes", "yes")
    assert not relaxed_correctness("0", "0.01")  # a zero target needs an exact match
    assert relaxed_correctness("0", "0")


def test_interval_iou_and_grounding_metrics():
    assert interval_iou([(0, 2)], (0, 2)) == 1.0
    assert interval_iou([(2, 4)], (1, 3)) == pytest.approx(1 / 3)
    assert interval_iou([(3, 1)], (1, 3)) == 1.0  # reversed intervals are ordered
    assert interval_iou([(5, 6)], (1, 3)) == 0.0
    # The official multi-interval rule: intersections and lengths add up.
    assert interval_iou([(0, 1), (2, 3)], (0, 3)) == pytest.approx(2 / 3)
    metrics = grounding_metrics([1.0, 0.4, 0.6, 0.0])
    assert metrics == {"mIoU": 50.0, "R1@0.3": 75.0, "R1@0.5": 50.0, "R1@0.7": 25.0}


def test_mme_scores():
    results = [
        ("existence", "1.jpg", True),
        ("existence", "1.jpg", True),
        ("existence", "2.jpg", True),
        ("existence", "2.jpg", False),
        ("code_reasoning", "c.png", False),
        ("code_reasoning", "c.png", False),
    ]
    scores = mme_scores(results)
    assert scores["subtasks"]["existence"] == {"acc": 75.0, "acc_plus": 50.0, "score": 125.0}
    assert scores["perception"] == 125.0 and scores["cognition"] == 0.0 and scores["total"] == 125.0


def test_ocrbench_rules():
    assert ocrbench_match("The sign says STOP", ["stop"])
    assert not ocrbench_match("go", "stop")
    assert ocrbench_match("\\frac { 1 } { 2 }", ["\\frac{1}{2}"], "HME100k")
    assert not ocrbench_match("\\frac{1}{2}", ["\\Frac{1}{2}"], "HME100k")  # case kept for formulas


def test_mmmu_rules():
    index2ans = {"A": "Baroque", "B": "Cubism", "C": "Gothic"}
    assert mmmu_parse_choice("(B)", ["A", "B", "C"], index2ans) == "B"
    assert mmmu_parse_choice("The answer is C.", ["A", "B", "C"], index2ans) == "C"
    assert mmmu_parse_choice("I think this painting is clearly in the Cubism style", ["A", "B", "C"], index2ans) == "B"
    assert mmmu_parse_choice("no idea", ["A", "B", "C"], index2ans) is None  # the official code guesses here
    assert mmmu_parse_choice("(A) or maybe (B)", ["A", "B", "C"], index2ans) == "B"  # the last one mentioned
    assert mmmu_eval_open("24", mmmu_parse_open("There are 24 figures, so the answer is 24."))
    assert mmmu_eval_open(["1.5", "3/2"], mmmu_parse_open("The ratio is 1.50"))
    assert mmmu_eval_open("paris", mmmu_parse_open("The capital is Paris"))
    assert not mmmu_eval_open("24", mmmu_parse_open("The answer is 25"))


def test_vqa_exact_match():
    assert vqa_exact_match("Yes.", "yes")
    assert not vqa_exact_match("blue car", "blue")
