"""MathVista testmini (Lu et al., 2024): 1,000 math-in-visual-context problems, multiple choice and free form.

Layouts (either)::

    MathVista/                         the release (GitHub lupantech/MathVista, data/ folder)
      testmini.json                    {pid: {"question", "image": "images/<pid>.jpg", "choices", "unit",
                                       "precision", "answer", "question_type" ("multi_choice" | "free_form"),
                                       "answer_type" ("text" | "integer" | "float" | "list"),
                                       "metadata": {"task", "skills", ...}, "query"?}}
                                       (not annot_testmini.json: source annotations only)
      query.json                       {pid: query}: the official prompts (else each record's "query")
      images/<pid>.jpg

    MathVista/data/testmini-*.parquet  ``AI4Math/MathVista`` on the hub: the same fields as columns,
                                       the image in ``decoded_image``

The official score extracts answers with GPT-4; here a rule-based extractor is used (no judge): the option
letter or text for multiple choice, the final number (integer / float rounded to ``precision``) or list
for free form. Its extraction may differ from GPT-4's on rambling answers; unreadable ones are counted.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from ..base import (
    Benchmark,
    DatasetError,
    EvalSettings,
    Prediction,
    Sample,
    image_item,
    image_media,
    letters_for,
    summarize,
    text_item,
    user_turn,
)
from ..extraction import clean_response, extract_choice, extract_final_number, extract_numbers
from ..io import ParquetImage, first_existing, parquet_columns, read_json, read_parquet


def build_query(problem: dict[str, Any]) -> str:
    """MathVista's zero-shot query (its ``build_query``, no demonstrations) for records without one."""
    question_type, answer_type = problem["question_type"], problem["answer_type"]
    precision = problem.get("precision")
    if question_type == "multi_choice":
        hint = "Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end."
    elif answer_type == "integer":
        hint = "Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end."
    elif answer_type == "float" and int(precision or 1) == 1:
        hint = "Please answer the question requiring a floating-point number with one decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end."
    elif answer_type == "float" and int(precision) == 2:
        hint = "Please answer the question requiring a floating-point number with two decimal places and provide the final value, e.g., 1.23, 1.34, 1.45, at the end."
    elif answer_type == "list":
        hint = "Please answer the question requiring a Python list as an answer and provide the final list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end."
    else:
        hint = ""
    query = f"Hint: {hint}\nQuestion: {problem['question']}"
    if problem.get("unit"):
        query += f" (Unit: {problem['unit']})"
    choices = problem.get("choices")
    if choices:
        query += "\nChoices:\n" + "\n".join(
            f"({letter}) {choice}" for letter, choice in zip(letters_for(choices), choices)
        )
    return query


def normalize_answer(value: Any, answer_type: str, precision: Any) -> str | None:
    """MathVista's normalization of an extracted free-form answer, as a comparable string."""
    if value is None:
        return None
    try:
        if answer_type == "integer":
            return str(int(float(value)))  # truncates, as the official normalize_extracted_answer does
        if answer_type == "float":
            return str(round(float(value), int(precision or 0)))
        if answer_type == "list":
            return str(value)
    except (TypeError, ValueError):
        return None
    return str(value).strip()


def _extract_list(text: str) -> list | None:
    found = re.findall(r"\[[^\[\]]*\]", text)
    for candidate in reversed(found):
        try:
            value = ast.literal_eval(candidate)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, list):
            return value
    numbers = extract_numbers(text)
    return [int(n) if n == int(n) else n for n in numbers] or None


PUBLISHED_TESTMINI = 1000
REQUIRED_KEYS = ("question", "image", "answer", "question_type", "answer_type")


def _wrong_file_hint(root: Path) -> str:
    # annot_testmini.json (GitHub data/ folder and the hub) holds source annotations (answer_latex, source,
    # problemid...), not the problems: reading it as testmini.json used to die with KeyError: 'image'.
    if (root / "annot_testmini.json").exists() or (root / "data" / "annot_testmini.json").exists():
        return " (annot_testmini.json is not the problem file: it holds source annotations without questions)"
    return ""


class MathVista(Benchmark):
    """MathVista testmini: accuracy overall, per question type, task and skill."""

    modality = "image"
    folder = "MathVista"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        annotation = first_existing(root / "testmini.json", root / "data" / "testmini.json")
        if annotation is not None:
            problems = self._read_problems(annotation)
            queries_file = first_existing(annotation.parent / "query.json", root / "query.json")
            queries = read_json(queries_file) if queries_file else {}
            rows = [(pid, problem, str(annotation.parent / problem["image"])) for pid, problem in problems.items()]
            source = str(annotation)
        else:
            files = sorted(root.glob("data/testmini-*.parquet")) or sorted(root.glob("testmini-*.parquet"))
            if not files:
                raise DatasetError(
                    f"{root}: expected testmini.json (+ images/) or data/testmini-*.parquet{_wrong_file_hint(root)}"
                )
            queries, rows = {}, []
            for file in files:
                columns = [c for c in parquet_columns(file) if c != "decoded_image"]
                for index, problem in enumerate(read_parquet(file, columns)):
                    rows.append((str(problem["pid"]), problem, ParquetImage(str(file), index, "decoded_image")))
            source = ", ".join(str(f) for f in files)
        samples = []
        for pid, problem, image in rows:
            choices = [str(c) for c in problem.get("choices") or []]
            if problem["question_type"] == "multi_choice" and str(problem["answer"]) not in choices:
                # Scored as the official script does (the answer text against the chosen option's text), so
                # such a question can never be answered right: reported, kept.
                self.report("answer_not_in_options", f"{pid}: answer {problem['answer']!r} is not one of {choices}")
            if isinstance(image, str):
                self.check_media(image, pid)
            query = queries.get(pid) or problem.get("query") or build_query(problem)
            samples.append(
                Sample(
                    id=pid,
                    question=query,
                    answer=str(problem["answer"]),
                    options=choices,
                    category=problem["question_type"],
                    media=[image_media(image)],
                    meta={
                        "answer_type": problem["answer_type"],
                        "precision": problem.get("precision"),
                        "task": (problem.get("metadata") or {}).get("task"),
                        "skills": (problem.get("metadata") or {}).get("skills") or [],
                    },
                )
            )
        self.check_count(len(samples), PUBLISHED_TESTMINI, source)
        return samples

    def _read_problems(self, annotation: Path) -> dict[str, dict[str, Any]]:
        """The problems of ``testmini.json`` ({pid: problem}); records lacking a field are reported and skipped."""
        data = read_json(annotation)
        if not isinstance(data, dict):
            raise DatasetError(f"{annotation}: expected {{pid: problem}}, got a {type(data).__name__}")
        problems = {}
        for pid, problem in data.items():
            missing = [key for key in REQUIRED_KEYS if not isinstance(problem, dict) or key not in problem]
            if missing:
                self.report("malformed_record", f"{annotation}: problem {pid} lacks {', '.join(missing)}; skipped")
                continue
            problems[str(pid)] = problem
        if data and not problems:
            raise DatasetError(f"{annotation}: no MathVista problems (records lack {', '.join(REQUIRED_KEYS)})")
        return problems

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        image = sample.media[0]["image"]
        return user_turn(image_item(image() if callable(image) else image), text_item(sample.question))

    def extract(self, sample: Sample, response: str) -> str | None:
        if sample.category == "multi_choice":
            letter = extract_choice(response, sample.options)
            return sample.options[letters_for(sample.options).index(letter)] if letter else None
        answer_type = sample.meta["answer_type"]
        if answer_type == "list":
            return normalize_answer(_extract_list(clean_response(response)), "list", None)
        if answer_type in ("integer", "float"):
            return normalize_answer(extract_final_number(response), answer_type, sample.meta["precision"])
        text = clean_response(response).strip().rstrip(".")
        return text or None

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        for prediction in predictions:
            sample = prediction.sample
            prediction.extracted = None if prediction.failed else self.extract(sample, prediction.response)
            expected = sample.answer
            if sample.category != "multi_choice" and sample.meta["answer_type"] in ("integer", "float"):
                expected = normalize_answer(sample.answer, sample.meta["answer_type"], sample.meta["precision"])
            prediction.correct = prediction.extracted is not None and (
                prediction.extracted.strip().lower() == str(expected).strip().lower()
            )
            prediction.score = float(prediction.correct)
        return summarize(
            predictions,
            groups={
                "by_question_type": lambda p: p.sample.category,
                "by_task": lambda p: p.sample.meta["task"],
                "by_skill": lambda p: p.sample.meta["skills"] or None,
            },
        )
