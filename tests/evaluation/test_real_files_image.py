"""The image benchmark readers on FORMAT REPLICAS of the published annotation files (``tests/evaluation/real``).

The readers were validated on the real files of the benchmarks' public repositories (source, path and commit
in each folder's ``PROVENANCE.md``, with the facts measured on the full files). Those files are not kept
here: each folder holds a replica written by us, with the real file's name, layout, keys, types and quirks
but invented content (OCRBench's ids repeated across source datasets, an MME copy with empty question files,
MathVista's ``annot_testmini.json`` that is not the problem file, ChartQA's two test sets, MMMU's answer key
and example outputs). A replica is not the whole set, so its load reports ``question_count_shortfall``; the
published counts are checked as the readers' constants. Images are not stored: tiny placeholders are written
where the annotations point.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from eval_helpers import FIXTURE_MODEL, SCRIPTED, png_bytes, predictions, scores, scripted_eval

from videollama3.evaluation import EvaluationError, get_benchmark

REAL = Path(__file__).resolve().parent / "real"
PLACEHOLDER = png_bytes(size=(28, 28))


def _placeholders(folder: Path, relative_paths) -> None:
    for relative in relative_paths:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(PLACEHOLDER)




def _kinds(benchmark) -> dict[str, int]:
    found: dict[str, int] = {}
    for problem in benchmark.problems:
        found[problem.kind] = found.get(problem.kind, 0) + 1
    return found


# --------------------------------------------------------------------------------------------------
# OCRBench: replica of OCRBench/OCRBench/OCRBench.json (24 records; the real file has 1,000)
# --------------------------------------------------------------------------------------------------


def _ocrbench(tmp_path: Path, images: bool = True) -> Path:
    data = tmp_path / "OCRBench"
    data.mkdir(parents=True)
    shutil.copy(REAL / "ocrbench" / "OCRBench.json", data / "OCRBench.json")
    if images:
        records = json.loads((data / "OCRBench.json").read_text())
        _placeholders(data / "OCRBench_Images", {r["image_path"] for r in records})
    return data


def test_ocrbench_published_count_is_the_documented_one():
    from videollama3.evaluation.benchmarks.ocrbench import PUBLISHED_QUESTIONS

    assert PUBLISHED_QUESTIONS == 1000  # OCRBench.json of the release: 1,000 records (113 id collisions)


def test_ocrbench_replica_loads_with_unique_ids_despite_repeating_source_ids(tmp_path):
    benchmark = get_benchmark("ocrbench")
    samples = benchmark.load(_ocrbench(tmp_path))
    assert len(samples) == 24
    assert [s.id for s in samples] == [str(i) for i in range(24)]  # positions: the file's "id" repeats
    source_ids = [s.meta["source_id"] for s in samples]
    assert len(set(source_ids)) == 22  # 221 (IIIT5K / STVQA) and 40 (svt / docVQA) are used twice
    assert (samples[0].meta, samples[10].meta) == (
        {"dataset_name": "IIIT5K", "source_id": 221},
        {"dataset_name": "STVQA", "source_id": 221},
    )
    assert (samples[1].meta["source_id"], samples[14].meta["source_id"]) == (40, 40)
    # A replica is not the whole set: the shortfall is reported.
    assert [p.kind for p in benchmark.problems] == ["question_count_shortfall"]
    assert "24 questions loaded, 1000 published (976 missing)" in benchmark.problems[0].detail
    first = samples[0]
    assert (first.question, first.answer, first.category) == (
        "what word is shown in the picture?",
        ["HARBOUR"],
        "Regular Text Recognition",
    )
    assert first.media[0]["image"].endswith("OCRBench_Images/IIIT5K/test/407_3.png")
    assert samples[10].answer == ["ALBATROSS", "albatross"]  # a list of accepted answers
    hme = samples[22]
    assert hme.meta["dataset_name"] == "HME100k" and hme.answer == ["a ^ { 2 } + b ^ { 2 }\n", "a^2 + b^2\n"]
    assert samples[18].media == samples[19].media  # two questions on one receipt image
    per_type: dict[str, int] = {}
    for sample in samples:
        per_type[sample.category] = per_type.get(sample.category, 0) + 1
    assert len(per_type) == 10  # all ten question types of the release
    assert per_type["Key Information Extraction"] == per_type["Doc-oriented VQA"] == 4


def test_ocrbench_replica_runs_end_to_end(tmp_path, capsys):
    data = _ocrbench(tmp_path)
    records = json.loads((data / "OCRBench.json").read_text())
    # Every even record is answered with (a sentence containing) its first answer, odd ones with nothing.
    responses = {}
    for index, record in enumerate(records):
        answers = record["answers"] if isinstance(record["answers"], list) else [record["answers"]]
        responses[str(index)] = f"The answer is {answers[0]}" if index % 2 == 0 else ""
    results = scripted_eval(tmp_path, "ocrbench", data, responses)
    metrics = results["ocrbench"]["metrics"]
    assert metrics["n"] == 24 and metrics["failed"] == 0
    assert metrics["score"] == 12 and metrics["accuracy"] == 50.0
    assert sum(metrics["by_type"].values()) == sum(metrics["by_dataset"].values()) == 12
    assert metrics["by_dataset"]["HME100k"] == 1  # the LaTeX answer, matched with spaces removed
    assert results["ocrbench"]["data_problems"]["counts"] == {"question_count_shortfall": 1}
    assert "ocrbench: data problems: question_count_shortfall=1" in capsys.readouterr().out


def test_ocrbench_missing_image_fails_its_samples_only(tmp_path):
    data = _ocrbench(tmp_path)
    (data / "OCRBench_Images" / "IIIT5K" / "test" / "407_3.png").unlink()
    responses = {"0": "HARBOUR", "1": "whatever"}
    results = scripted_eval(tmp_path, "ocrbench", data, responses, limit=2)
    assert results["ocrbench"]["metrics"]["failed"] == 1
    assert results["ocrbench"]["data_problems"]["counts"] == {"missing_media": 1, "question_count_shortfall": 1}
    failed = next(r for r in predictions(tmp_path / "out", "ocrbench") if r["id"] == "0")
    assert failed["response"] is None and "image not found" in failed["error"] and "407_3.png" in failed["error"]
    other = next(r for r in predictions(tmp_path / "out", "ocrbench") if r["id"] == "1")
    assert other["error"] is None and other["response"] == "whatever"


def test_ocrbench_replica_with_the_tiny_checkpoint(tmp_path):
    from videollama3.cli import main

    data = _ocrbench(tmp_path)
    output = tmp_path / "out"
    args = ["eval", "--benchmark", "ocrbench", "--data-root", str(data), "--output", str(output), "--no-progress"]
    args += ["--model", str(FIXTURE_MODEL), "--device", "cpu", "--max-new-tokens", "3", "--limit", "3"]
    assert main(args) == 0
    result = scores(output, "ocrbench")
    assert result["metrics"]["n"] == 3 and result["metrics"]["failed"] == 0
    assert [r["id"] for r in predictions(output, "ocrbench")] == ["0", "1", "2"]


# --------------------------------------------------------------------------------------------------
# MME: replica of a damaged copy of MME_Benchmark_release_version (empty question files, as the copy
# checked had 278) and of LLaVA's llava_mme.jsonl (every question of the release, no answers)
# --------------------------------------------------------------------------------------------------

MME_EMPTY = 4  # posters: 2 of 4 question files empty; scene: both empty
MME_SHORTFALLS = 15  # every subtask of the replica (14) and the total
MME_PROBLEMS = f"empty_file={MME_EMPTY}, question_count_shortfall={MME_SHORTFALLS}"


def _mme(tmp_path: Path) -> Path:
    data = tmp_path / "MME"
    shutil.copytree(REAL / "mme" / "MME_Benchmark_release_version", data / "MME_Benchmark_release_version")
    images = (REAL / "mme" / "image_files.txt").read_text().split()
    _placeholders(data / "MME_Benchmark_release_version", images)
    return data


def test_mme_published_counts_are_the_documented_ones():
    from videollama3.evaluation.benchmarks.mme import PUBLISHED_QUESTIONS

    # The counts of LLaVA's llava_mme.jsonl (all 2,374 questions of the release), checked on the real file.
    assert PUBLISHED_QUESTIONS == {
        "existence": 60,
        "count": 60,
        "position": 60,
        "color": 60,
        "posters": 294,
        "celebrity": 340,
        "scene": 400,
        "landmark": 400,
        "artwork": 400,
        "OCR": 40,
        "commonsense_reasoning": 140,
        "numerical_calculation": 40,
        "text_translation": 40,
        "code_reasoning": 40,
    }
    assert sum(PUBLISHED_QUESTIONS.values()) == 2374


def test_mme_replica_reports_its_empty_question_files(tmp_path):
    benchmark = get_benchmark("mme")
    samples = benchmark.load(_mme(tmp_path))
    # 20 question files, 4 of them empty: 16 x 2 questions.
    assert len(samples) == 32
    assert _kinds(benchmark) == {"empty_file": MME_EMPTY, "question_count_shortfall": MME_SHORTFALLS}
    shortfalls = [p.detail for p in benchmark.problems if p.kind == "question_count_shortfall"]
    assert any(d.endswith("posters: 4 questions loaded, 294 published (290 missing)") for d in shortfalls)
    assert any(d.endswith("scene: 0 questions loaded, 400 published (400 missing)") for d in shortfalls)
    assert any("32 questions loaded, 2374 published (2342 missing)" in d for d in shortfalls)
    empty = sorted(p.detail for p in benchmark.problems if p.kind == "empty_file")
    assert "posters/questions_answers_YN/tt9900102.txt" in empty[0]
    assert empty[0].endswith("no questions (the release has two per image)")
    assert sum("scene/questions_answers_YN/" in d for d in empty) == 2
    by_id = {s.id: s for s in samples}
    code = by_id["code_reasoning/0001.png/0"]
    assert code.question == "Does the code in the image print 7? Please answer yes or no."
    assert (code.answer, by_id["code_reasoning/0001.png/1"].answer) == ("yes", "no")
    assert (by_id["code_reasoning/0002.png/0"].answer, by_id["code_reasoning/0002.png/1"].answer) == ("no", "yes")
    poster = by_id["posters/tt9900101.jpg/0"]
    assert (poster.question, poster.answer) == (
        "Is this movie titled The Glass Orchard? Please answer yes or no.",
        "yes",
    )
    assert poster.media[0]["image"].endswith("posters/images/tt9900101.jpg")
    # A file without a final newline reads the same; one image name used by two subtasks stays two samples.
    assert [by_id[f"OCR/0001.jpg/{n}"].answer for n in (0, 1)] == ["yes", "no"]
    assert by_id["existence/000000900101.jpg/0"].media != by_id["count/000000900101.jpg/0"].media
    per_task: dict[str, int] = {}
    for sample in samples:
        per_task[sample.category] = per_task.get(sample.category, 0) + 1
    assert per_task["existence"] == 4 and per_task["posters"] == 4 and "scene" not in per_task
    assert all(s.answer in ("yes", "no") for s in samples)


def test_mme_loaded_questions_are_in_the_llava_question_list(tmp_path):
    """The replica of LLaVA's llava_mme.jsonl lists every question of the replica release (no answers):
    every loaded question is one of them, and the absent ones are those of the empty files."""
    rows = [json.loads(line) for line in (REAL / "mme" / "llava_mme.jsonl").read_text().splitlines()]
    assert len(rows) == 40

    def key(category: str, image: str, question: str) -> tuple[str, str, str]:
        return category, image, " ".join(question.replace("Please answer yes or no.", "").split())

    suffix = "\nAnswer the question using a single word or phrase."
    listed = [key(r["category"], r["image"].rsplit("/", 1)[-1], r["text"].removesuffix(suffix)) for r in rows]
    loaded = [key(s.category, s.meta["image"], s.question) for s in get_benchmark("mme").load(_mme(tmp_path))]
    assert set(loaded) <= set(listed)
    absent = [item for item in listed if item not in set(loaded)]
    assert len(absent) == 8 and {category for category, _, _ in absent} == {"posters", "scene"}


def test_mme_prompt_is_the_official_videollama3_one(tmp_path):
    benchmark = get_benchmark("mme")
    sample = next(s for s in benchmark.load(_mme(tmp_path)) if s.id == "existence/000000900101.jpg/0")
    text = benchmark.build_conversation(sample, None)[0]["content"][1]["text"]
    assert text == (
        "Is there a wheelbarrow in this image?\nAnswer the question using a single word or phrase.\n"
        "Please answer yes or no."
    )


def test_mme_empty_files_are_in_the_results_and_the_summary(tmp_path, capsys):
    data = _mme(tmp_path)
    results = scripted_eval(tmp_path, "mme", data, {}, limit=4)
    problems = results["mme"]["data_problems"]
    assert problems["counts"] == {"empty_file": MME_EMPTY, "question_count_shortfall": MME_SHORTFALLS}
    assert len(problems["details"]) == MME_EMPTY + MME_SHORTFALLS
    assert sum(d.startswith("empty_file: ") for d in problems["details"]) == MME_EMPTY
    on_disk = json.loads((tmp_path / "out" / "mme" / "scores.json").read_text())
    assert on_disk["data_problems"] == problems
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["mme"]["data_problems"] == problems["counts"]
    assert f"mme: data problems: {MME_PROBLEMS}" in capsys.readouterr().out


def test_mme_strict_turns_data_problems_into_an_error(tmp_path, capsys):
    data = _mme(tmp_path)
    with pytest.raises(EvaluationError, match=rf"--strict.*{MME_PROBLEMS}"):
        scripted_eval(tmp_path, "mme", data, {}, limit=4, strict=True)
    from videollama3.cli import main

    args = ["eval", "--benchmark", "mme", "--data-root", str(data), "--output", str(tmp_path / "cli"), "--strict"]
    assert main([*args, "--model", str(tmp_path / "mme_script.json"), "--predictor", SCRIPTED, "--no-progress"]) == 2
    assert "empty_file" in capsys.readouterr().err


def test_mme_missing_image_fails_that_image_only(tmp_path):
    data = _mme(tmp_path)
    (data / "MME_Benchmark_release_version" / "code_reasoning" / "0001.png").unlink()
    benchmark = get_benchmark("mme")
    samples = benchmark.load(data)
    assert len(samples) == 32  # its two questions are kept, to fail at inference
    missing = [p.detail for p in benchmark.problems if p.kind == "missing_media"]
    assert len(missing) == 1 and "code_reasoning/0001.txt" in missing[0]
    only_code = tmp_path / "only_code"
    shutil.copytree(data / "MME_Benchmark_release_version" / "code_reasoning", only_code / "code_reasoning")
    results = scripted_eval(tmp_path, "mme", only_code, {"code_reasoning/0002.png/0": "No"})
    metrics = results["mme"]["metrics"]
    assert metrics["n"] == 4 and metrics["failed"] == 2
    assert results["mme"]["data_problems"]["counts"]["missing_media"] == 1
    rows = {r["id"]: r for r in predictions(tmp_path / "out", "mme")}
    assert rows["code_reasoning/0002.png/0"]["correct"] is True
    # Kept under the usual name (<stem>.jpg): they fail at inference.
    assert rows["code_reasoning/0001.jpg/0"]["response"] is None
    assert "image not found" in rows["code_reasoning/0001.jpg/1"]["error"]


# --------------------------------------------------------------------------------------------------
# MathVista: replicas of data/testmini.json, data/query.json and data/annot_testmini.json
# --------------------------------------------------------------------------------------------------


def _mathvista(tmp_path: Path, images: bool = True) -> Path:
    data = tmp_path / "MathVista"
    data.mkdir(parents=True)
    for name in ("testmini.json", "query.json"):
        shutil.copy(REAL / "mathvista" / name, data / name)
    if images:
        problems = json.loads((data / "testmini.json").read_text())
        _placeholders(data, {p["image"] for p in problems.values()})
    return data


def test_mathvista_published_count_is_the_documented_one():
    from videollama3.evaluation.benchmarks.mathvista import PUBLISHED_TESTMINI

    assert PUBLISHED_TESTMINI == 1000  # testmini.json of the release: 1,000 problems


def test_mathvista_replica_testmini_loads(tmp_path):
    benchmark = get_benchmark("mathvista")
    samples = benchmark.load(_mathvista(tmp_path))
    assert len(samples) == 12
    assert [p.kind for p in benchmark.problems] == ["question_count_shortfall"]
    assert "12 questions loaded, 1000 published (988 missing)" in benchmark.problems[0].detail
    by_id = {s.id: s for s in samples}
    first = by_id["1"]
    assert (first.answer, first.options, first.category) == ("2.5", [], "free_form")
    assert first.meta["answer_type"] == "float" and first.meta["precision"] == 1
    assert first.meta["task"] == "textbook question answering"
    assert first.question.startswith(
        "Hint: Please answer the question requiring a floating-point number with one decimal place"
    )
    # The query comes from query.json, which holds the unit.
    assert by_id["2"].question == (
        "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, "
        "at the end.\nQuestion: How long is the pencil next to the ruler? (Unit: cm)"
    )
    # Duplicate option texts are published as they are; the answer is the option text.
    assert (by_id["4"].options, by_id["4"].answer) == (["8", "12", "12", "20"], "8")
    assert by_id["4"].question.endswith("Choices:\n(A) 8\n(B) 12\n(C) 12\n(D) 20")
    assert by_id["5"].answer == "[3, 7]" and by_id["5"].meta["answer_type"] == "list"
    assert by_id["6"].meta["precision"] == 2 and by_id["8"].meta["skills"] == [
        "geometry reasoning",
        "algebraic reasoning",
    ]
    types: dict[str, int] = {}
    for sample in samples:
        types[sample.category] = types.get(sample.category, 0) + 1
    assert types == {"free_form": 7, "multi_choice": 5}


def test_mathvista_annot_testmini_is_refused_with_a_reason(tmp_path):
    data = tmp_path / "MathVista"
    data.mkdir(parents=True)
    shutil.copy(REAL / "mathvista" / "annot_testmini.json", data / "annot_testmini.json")
    with pytest.raises(EvaluationError, match="annot_testmini.json is not the problem file"):
        get_benchmark("mathvista").load(data)
    # Also under data/, as in the repository.
    nested = tmp_path / "nested"
    (nested / "data").mkdir(parents=True)
    shutil.copy(REAL / "mathvista" / "annot_testmini.json", nested / "data" / "annot_testmini.json")
    with pytest.raises(EvaluationError, match="annot_testmini.json is not the problem file"):
        get_benchmark("mathvista").load(nested)
    # Next to the real problem file it is ignored.
    full = _mathvista(tmp_path / "with_annot")
    shutil.copy(REAL / "mathvista" / "annot_testmini.json", full / "annot_testmini.json")
    assert len(get_benchmark("mathvista").load(full)) == 12


def test_mathvista_scores_as_the_official_normalisation(tmp_path):
    data = _mathvista(tmp_path)
    responses = {
        "2": "The pencil is 12.8 cm long, so the answer is 12.8",  # integer: truncated, as the official code
        "1": "v = 2.54",  # float, precision 1: 2.5
        "6": "About 0.349",  # float, precision 2: 0.35
        "5": "The drop is between months [3, 7].",  # list
        "4": "(A) 8",  # multiple choice with duplicate options
        "10": "I do not know",  # unparseable
    }
    results = scripted_eval(tmp_path, "mathvista", data, responses)
    by_id = {r["id"]: r for r in predictions(tmp_path / "out", "mathvista")}
    assert [by_id[pid]["correct"] for pid in responses] == [True, True, True, True, True, False]
    assert by_id["10"]["extracted"] is None
    assert results["mathvista"]["metrics"]["n"] == 12


# --------------------------------------------------------------------------------------------------
# ChartQA: replicas of "ChartQA Dataset/test/test_human.json" and test_augmented.json
# --------------------------------------------------------------------------------------------------


def _chartqa(tmp_path: Path) -> Path:
    data = tmp_path / "ChartQA" / "ChartQA Dataset"
    shutil.copytree(REAL / "chartqa" / "test", data / "test")
    records = [
        r for split in ("human", "augmented") for r in json.loads((data / "test" / f"test_{split}.json").read_text())
    ]
    _placeholders(data / "test" / "png", {r["imgname"] for r in records})
    return tmp_path / "ChartQA"


def test_chartqa_published_count_is_the_documented_one():
    from videollama3.evaluation.benchmarks.chartqa import PUBLISHED_QUESTIONS

    assert PUBLISHED_QUESTIONS == 1250  # per test set


def test_chartqa_replicas_load(tmp_path):
    benchmark = get_benchmark("chartqa")
    samples = benchmark.load(_chartqa(tmp_path))
    assert [s.category for s in samples].count("human") == 8
    assert [s.category for s in samples].count("augmented") == 6
    # A replica is not the full set: each test set's shortfall is reported (1,250 questions each).
    assert [p.kind for p in benchmark.problems] == ["question_count_shortfall"] * 2
    assert "8 questions loaded, 1250 published" in benchmark.problems[0].detail
    assert "6 questions loaded, 1250 published" in benchmark.problems[1].detail
    first = samples[0]
    assert (first.id, first.question, first.answer) == ("human/0", "How many countries are shown in the chart?", "9")
    assert first.media[0]["image"].endswith("ChartQA Dataset/test/png/90000001000001.png")
    odd = samples[6]  # the file holds a replacement character in this question, as the real one does
    assert odd.question == "In which year did the\ufffd two lines cross?"
    assert samples[8].id == "augmented/0" and samples[8].answer == "58"
    assert [s.answer for s in samples if s.answer in ("Yes", "No")] == ["No", "Yes"]


def test_chartqa_missing_test_set_is_reported(tmp_path):
    root = _chartqa(tmp_path)
    (root / "ChartQA Dataset" / "test" / "test_augmented.json").unlink()
    benchmark = get_benchmark("chartqa")
    assert len(benchmark.load(root)) == 8
    assert _kinds(benchmark) == {"question_count_shortfall": 1, "missing_file": 1}


def test_chartqa_relaxed_accuracy_on_replica_labels(tmp_path):
    data = _chartqa(tmp_path)
    responses = {
        "human/1": "0.43",  # label 0.42: 2.4% off -> right
        "human/2": "1.6",  # 1.583333333: 1.1% off -> right
        "human/3": "no",  # Yes/No labels: case-insensitive exact match
        "human/4": "6%",  # 0.06 as a percentage -> right
        "human/5": "the dark blue bar",  # text needs an exact match -> wrong
        "augmented/3": "362810",  # 362810.4 -> right
    }
    results = scripted_eval(tmp_path, "chartqa", data, responses)
    by_id = {r["id"]: r["correct"] for r in predictions(tmp_path / "out", "chartqa")}
    assert [by_id[k] for k in responses] == [True, True, True, True, False, True]
    assert results["chartqa"]["metrics"]["n"] == 14


# --------------------------------------------------------------------------------------------------
# GQA: no public GitHub copy of testdev_balanced_questions.json; its count was checked on LLaVA's list
# --------------------------------------------------------------------------------------------------


def test_gqa_published_count_is_the_documented_one():
    from videollama3.evaluation.benchmarks.gqa import PUBLISHED_QUESTIONS

    assert PUBLISHED_QUESTIONS == 12578  # test-dev balanced, as LLaVA's llava_gqa_testdev_balanced.jsonl


# --------------------------------------------------------------------------------------------------
# MMMU: replicas of the official answer key and example outputs (the questions are on the hub only)
# --------------------------------------------------------------------------------------------------


def _mmmu_outputs() -> tuple[list[dict], dict[str, dict]]:
    folder = REAL / "mmmu" / "example_outputs" / "llava1.5_13b"
    outputs = [o for file in sorted(folder.glob("*/output.json")) for o in json.loads(file.read_text())]
    official = json.loads((REAL / "mmmu" / "official_parsed.json").read_text())
    return outputs, official


def test_mmmu_published_count_is_the_documented_one():
    from videollama3.evaluation.benchmarks.mmmu import PUBLISHED_VALIDATION, SUBJECT_TO_DISCIPLINE

    assert PUBLISHED_VALIDATION == 900 and len(SUBJECT_TO_DISCIPLINE) == 30  # answer_dict_val.json: 900 ids


def test_mmmu_answer_key_ids_map_to_the_30_subjects():
    from videollama3.evaluation.benchmarks.mmmu import SUBJECT_TO_DISCIPLINE, _subject

    key = json.loads((REAL / "mmmu" / "answer_dict_val.json").read_text())
    assert len(key) == 90
    subjects: dict[str, int] = {}
    for sample_id in key:
        subject = _subject(sample_id, "unused")
        assert subject in SUBJECT_TO_DISCIPLINE, sample_id  # e.g. validation_Basic_Medical_Science_1
        subjects[subject] = subjects.get(subject, 0) + 1
    assert len(subjects) == 30 and set(subjects.values()) == {3}
    types = [v["question_type"] for v in key.values()]
    assert (types.count("multiple-choice"), types.count("short-answer")) == (84, 6)
    assert key["validation_Math_2"]["ground_truth"] == ["5/8", "0.625"]  # several accepted answers
    assert key["validation_Physics_3"] == {"question_type": "short-answer", "ground_truth": "12"}


def test_mmmu_scoring_matches_the_official_parser_on_replica_responses():
    """Our MMMU scoring on the replica example responses agrees with the official parse_multi_choice_response /
    parse_open_response / eval_open (results stored by running them on these responses), except where the
    official code picks a random letter (2 responses): those are never guessed here."""
    from videollama3.evaluation import Prediction, Sample
    from videollama3.evaluation.benchmarks.mmmu import MMMU

    outputs, official = _mmmu_outputs()
    assert len(outputs) == len(official) == 18
    predictions = []
    for output in outputs:
        multiple_choice = output["question_type"] == "multiple-choice"
        options = [output["index2ans"][letter] for letter in output["all_choices"]] if multiple_choice else []
        sample = Sample(
            id=output["id"],
            question="",
            # The hub's parquet keeps every answer as a string, several accepted ones as a Python list literal.
            answer=output["answer"] if isinstance(output["answer"], str) else str(output["answer"]),
            options=options,
            category=output["id"].rsplit("_", 1)[0].removeprefix("validation_"),
            meta={"question_type": output["question_type"], "discipline": None},
        )
        predictions.append(Prediction(sample, output["response"]))
    metrics = MMMU().score(predictions)
    assert metrics["n"] == 18
    random_picks = [p for p in predictions if official[p.id]["parsed"] == "RANDOM"]
    assert [p.id for p in random_picks] == ["validation_Art_Theory_2", "validation_Computer_Science_3"]
    assert all(p.extracted is None and not p.correct for p in random_picks)
    for prediction in predictions:
        reference = official[prediction.id]
        if reference["parsed"] == "RANDOM":
            continue
        assert prediction.correct == reference["correct"], prediction.id
        if prediction.sample.meta["question_type"] == "multiple-choice":
            assert prediction.extracted == reference["parsed"], prediction.id
        else:  # the official code returns list(set(...)): the same values, in no fixed order
            assert sorted(map(repr, prediction.extracted)) == sorted(map(repr, reference["parsed"])), prediction.id
    by_id = {p.id: p for p in predictions}
    assert by_id["validation_Math_2"].correct  # 0.625 rounds to 0.62, as does the accepted "0.625"
    assert by_id["validation_Computer_Science_2"].extracted == "A"  # the last of several letters
    assert not by_id["validation_Physics_3"].correct
