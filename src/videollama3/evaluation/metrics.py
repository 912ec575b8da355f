"""Standard benchmark metrics, as the benchmarks' official evaluation code defines them.

- :func:`anls`: Average Normalized Levenshtein Similarity (DocVQA / InfoVQA, threshold 0.5);
- :func:`relaxed_correctness`: ChartQA's relaxed accuracy (5% relative tolerance on numbers);
- :func:`interval_iou` and :func:`grounding_metrics`: temporal grounding mIoU and R1@{0.3, 0.5, 0.7};
- :func:`mme_scores`: MME's per-subtask acc + acc+ scores and the perception / cognition totals;
- :func:`ocrbench_match`: OCRBench's containment rule;
- :func:`mmmu_parse_choice`, :func:`mmmu_parse_open`, :func:`mmmu_eval_open`: the MMMU rules
  (without the official random guess for unparseable multiple-choice answers);
- :func:`vqa_exact_match`: GQA-style exact match.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

# --------------------------------------------------------------------------------------------------
# ANLS
# --------------------------------------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _anls_normalize(text: str) -> str:
    # The DocVQA evaluation server compares lowercased answers with whitespace collapsed.
    return " ".join(str(text).strip().lower().split())


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """Normalized Levenshtein similarity of ``prediction`` to the closest answer, 0 when too far.

    For each answer: NL = distance / max(len); the similarity is 1 - NL if NL < ``threshold``, else 0.
    The result is the best over the answers (the per-question ANLS; average it over questions).
    """
    pred = _anls_normalize(prediction)
    best = 0.0
    for answer in answers:
        gold = _anls_normalize(answer)
        longest = max(len(gold), len(pred))
        distance = levenshtein(gold, pred) / longest if longest else 0.0
        best = max(best, 1.0 - distance if distance < threshold else 0.0)
    return best


# --------------------------------------------------------------------------------------------------
# ChartQA relaxed accuracy
# --------------------------------------------------------------------------------------------------


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(target: str, prediction: str, max_relative_change: float = 0.05) -> bool:
    """ChartQA's relaxed accuracy (pix2struct's definition, used by the official evaluations).

    Numbers are correct within ``max_relative_change`` of the target (percentages are divided by 100
    first); anything else needs a case-insensitive exact match. A target of 0 needs an exact match.
    """
    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        return abs(prediction_float - target_float) / abs(target_float) <= max_relative_change
    return prediction.lower() == target.lower()


# --------------------------------------------------------------------------------------------------
# Temporal grounding
# --------------------------------------------------------------------------------------------------


def interval_iou(predicted: Iterable[Sequence[float]], target: Sequence[float]) -> float:
    """IoU of predicted interval(s) with the target interval, as the official VideoLLaMA3 code computes it.

    Several predicted intervals add their intersections and lengths (for one interval this is the
    usual IoU). Each predicted interval is ordered (min, max) first.
    """
    gt_start, gt_end = float(target[0]), float(target[1])
    intersection = 0.0
    union = gt_end - gt_start
    for interval in predicted:
        start, end = min(interval), max(interval)
        intersection += max(0.0, min(end, gt_end) - max(start, gt_start))
        union += end - start
    union -= intersection
    return intersection / union if union > 0 else 0.0


def grounding_metrics(ious: Sequence[float], thresholds: Sequence[float] = (0.3, 0.5, 0.7)) -> dict[str, float]:
    """mIoU and R1@t (share of IoU >= t), in percent."""
    n = len(ious)
    metrics = {"mIoU": 100.0 * sum(ious) / n if n else 0.0}
    for t in thresholds:
        metrics[f"R1@{t}"] = 100.0 * sum(iou >= t for iou in ious) / n if n else 0.0
    return metrics


# --------------------------------------------------------------------------------------------------
# MME
# --------------------------------------------------------------------------------------------------

MME_PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def mme_scores(results: Iterable[tuple[str, str, bool]]) -> dict[str, object]:
    """MME scores from (subtask, image, correct) triples, as MME's ``eval_tool/calculation.py``.

    Per subtask: acc = correct questions / questions, acc+ = images with both questions correct /
    images, score = 100 * (acc + acc+) (max 200). Perception = sum of the 10 perception subtasks
    (max 2000), cognition = sum of the 4 cognition subtasks (max 800).
    """
    by_task: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for task, image, correct in results:
        by_task[task][image].append(bool(correct))
    subtasks = {}
    for task, images in sorted(by_task.items()):
        answers = [c for per_image in images.values() for c in per_image]
        acc = 100.0 * sum(answers) / len(answers)
        acc_plus = 100.0 * sum(all(per_image) for per_image in images.values()) / len(images)
        subtasks[task] = {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus}
    perception = sum(v["score"] for k, v in subtasks.items() if k in MME_PERCEPTION)
    cognition = sum(v["score"] for k, v in subtasks.items() if k in MME_COGNITION)
    return {"perception": perception, "cognition": cognition, "total": perception + cognition, "subtasks": subtasks}


# --------------------------------------------------------------------------------------------------
# OCRBench
# --------------------------------------------------------------------------------------------------


def ocrbench_match(prediction: str, answers: str | Sequence[str], dataset_name: str = "") -> bool:
    """OCRBench's rule: an answer is contained in the prediction (case-insensitive; for handwritten
    math expressions (HME100k) spaces are removed and case kept)."""
    answers = [answers] if isinstance(answers, str) else list(answers)
    if dataset_name == "HME100k":
        pred = prediction.strip().replace("\n", " ").replace(" ", "")
        return any(str(a).strip().replace("\n", " ").replace(" ", "") in pred for a in answers)
    pred = prediction.lower().strip().replace("\n", " ")
    return any(str(a).lower().strip().replace("\n", " ") in pred for a in answers)


# --------------------------------------------------------------------------------------------------
# MMMU (rules of the official MMMU eval_utils, without random guessing)
# --------------------------------------------------------------------------------------------------


def mmmu_parse_choice(response: str, all_choices: Sequence[str], index2ans: dict[str, str]) -> str | None:
    """MMMU's multiple-choice parsing; None where the official code would pick a random option."""
    for char in (",", ".", "!", "?", ";", ":", "'"):
        response = response.strip(char)
    response = " " + response + " "
    candidates: list[str] = []
    bracketed = False
    for choice in all_choices:
        if f"({choice})" in response:
            candidates.append(choice)
            bracketed = True
    if not candidates:
        candidates = [choice for choice in all_choices if f" {choice} " in response]
    by_text = False
    if not candidates and len(response.split()) > 5:
        candidates = [index for index, answer in index2ans.items() if answer.lower() in response.lower()]
        by_text = True
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]

    # Several: the one mentioned last, as the official code does.
    def position(candidate: str) -> int:
        if by_text:
            return response.lower().rfind(index2ans[candidate].lower())
        return response.rfind(f"({candidate})" if bracketed else f" {candidate} ")

    return max(candidates, key=position)


def _mmmu_is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def _mmmu_normalize(text: str) -> list:
    text = text.strip()
    if _mmmu_is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    if len(text) == 1:
        return [" " + text, text + " "]  # avoid matching a letter inside a word
    return [text]


def _mmmu_numbers(text: str) -> list[str]:
    with_commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+)(?![eE][+-]?\d+)(?![,\d])", text)
    return with_commas + scientific + simple


def mmmu_parse_open(response: str) -> list:
    """MMMU's open-answer parsing: key sub-responses and the numbers in them, normalized."""

    def key_subresponses(text: str) -> list[str]:
        text = text.strip().strip(".").lower()
        parts = re.split(r"\.\s(?=[A-Z])|\n", text)
        indicators = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
        keys = []
        for index, part in enumerate(parts):
            if index == len(parts) - 1:
                indicators = indicators + ["="]
            shortest = None
            for indicator in indicators:
                if indicator in part:
                    candidate = part.split(indicator)[-1].strip()
                    if shortest is None or len(candidate) < len(shortest):
                        shortest = candidate
            if shortest and shortest.strip() not in (":", ",", ".", "!", "?", ";", "'"):
                keys.append(shortest)
        return keys or [text]

    keys = key_subresponses(response)
    candidates: list[str] = list(keys)
    for key in keys:
        candidates.extend(_mmmu_numbers(key))
    normalized = []
    for candidate in candidates:
        normalized.extend(_mmmu_normalize(candidate))
    unique = []
    for value in normalized:
        if value not in unique:
            unique.append(value)
    return unique


def mmmu_eval_open(answers: str | Sequence[str], predictions: list) -> bool:
    """MMMU's open-answer check: a gold string contained in a predicted string, or equal numbers."""
    golds = []
    for answer in [answers] if isinstance(answers, str) else answers:
        golds.extend(_mmmu_normalize(str(answer)))
    for prediction in predictions:
        if isinstance(prediction, str):
            if any(isinstance(gold, str) and gold in prediction for gold in golds):
                return True
        elif prediction in golds:
            return True
    return False


# --------------------------------------------------------------------------------------------------
# Short-answer VQA
# --------------------------------------------------------------------------------------------------


def vqa_exact_match(prediction: str, answer: str) -> bool:
    """GQA as LLaVA evaluates it: the prediction without a trailing period, lowercased, equals the answer."""
    return prediction.strip().rstrip(".").strip().lower() == str(answer).strip().lower()
