"""The video benchmark readers on FORMAT REPLICAS of the real published annotation files (``tests/evaluation/real``).

The readers were validated on the full real files of each benchmark's public repository in a working session
(source, path and commit, and the facts measured on the full files, in each folder's ``PROVENANCE.md`` and in
``real/VIDEO_NOTES.md``). This workplace does not allow committing the fetched files, so the repository keeps
replicas written by us: the same file names, layout, keys / columns / types / nesting and the same quirks,
with invented questions, options, ids and video names. The quirks: MLVU's needle questions whose answer is
not a candidate, its repeated and empty candidates and its empty question, the GitHub release's ``data/``
folder, a Charades-STA copy with an extra column, LongVideoBench's repeated candidates and 3-candidate
question, EgoSchema's first ``questions.json`` without ``question``, MMVU's empty choices of open questions,
NExT-QA's repeated option texts and ``TP`` type, TempCompass's three caption label styles, Video-MME's
parquet dtypes. The replicas are small, so every loader reports ``question_count_shortfall``; the published
full-file counts are checked against the readers' constants instead. Videos are not stored: tiny MP4s are
written where the annotations point when a test needs them. Perception Test has no test here: its
annotations are published only as zip files on Google Cloud Storage (and as Git LFS objects on the hub), no
public GitHub copy was found.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from eval_helpers import FIXTURE_MODEL, make_mp4, predictions, scores, scripted_eval

from videollama3.evaluation import get_benchmark
from videollama3.evaluation.benchmarks import (
    activitynet_qa,
    charades_sta,
    egoschema,
    longvideobench,
    mlvu,
    mmvu,
    mvbench,
    nextqa,
    tempcompass,
    videomme,
)

REAL = Path(__file__).resolve().parent / "real"


def _copy(tmp_path: Path, benchmark: str, subfolder: str = "") -> Path:
    """A writable copy of ``real/<benchmark>[/<subfolder>]`` (tests add videos next to the annotations)."""
    data = tmp_path / benchmark
    shutil.copytree(REAL / benchmark / subfolder, data)
    return data


def _problem_counts(benchmark) -> Counter:
    return Counter(problem.kind for problem in benchmark.problems)


def _details(benchmark, kind: str) -> list[str]:
    return [problem.detail for problem in benchmark.problems if problem.kind == kind]




# --------------------------------------------------------------------------------------------------
# The published full-file counts (measured on the real files during validation) are the readers' constants
# --------------------------------------------------------------------------------------------------


def test_published_counts_measured_on_the_real_files():
    assert sum(mlvu.PUBLISHED_COUNTS.values()) == 2175
    assert mlvu.PUBLISHED_COUNTS == {
        "1_plotQA": 539,
        "2_needle": 355,
        "3_ego": 352,
        "4_count": 206,
        "5_order": 259,
        "6_anomaly_reco": 200,
        "7_topic_reasoning": 264,
    }
    assert (len(mvbench.TASKS), mvbench.QUESTIONS_PER_TASK) == (20, 200)  # 4,000 questions
    assert videomme.PUBLISHED_QUESTIONS == 2700
    assert longvideobench.PUBLISHED_VALIDATION_QUESTIONS == 1337
    assert egoschema.PUBLISHED_QUESTIONS == 5031
    assert nextqa.PUBLISHED_COUNTS == {"test": 8564, "val": 4996}
    assert tempcompass.PUBLISHED_COUNTS == {"multi-choice": 1580, "yes_no": 2453, "caption_matching": 1503}
    assert activitynet_qa.PUBLISHED_TEST_QUESTIONS == 8000
    assert mmvu.PUBLISHED_VALIDATION_QUESTIONS == 1000
    assert charades_sta.PUBLISHED_COUNT == 3720


# --------------------------------------------------------------------------------------------------
# MLVU: replica of JUNJIE99/MLVU data/ (the seven multiple-choice task files)
# --------------------------------------------------------------------------------------------------

MLVU_REPLICA_COUNTS = {
    "Plot QA": 6,
    "Needle QA": 8,
    "Ego Reasoning": 4,
    "Action Count": 4,
    "Action Order": 4,
    "Anomaly Recognition": 5,
    "Topic Reasoning": 5,
}
MLVU_TOTAL = sum(MLVU_REPLICA_COUNTS.values())


def _mlvu_videos(data: Path, folder_of_task=lambda stem: stem) -> None:
    for task_file in sorted((data / "data").glob("*.json")):
        for video in {record["video"] for record in json.loads(task_file.read_text())}:
            make_mp4(data / "video" / folder_of_task(task_file.stem) / video, seconds=2, fps=2)


def test_mlvu_release_layout_loads_every_question_and_reports_the_awkward_ones(tmp_path):
    benchmark = get_benchmark("mlvu")
    samples = benchmark.load(_copy(tmp_path, "mlvu"))  # data/, as on GitHub (the old reader only knew json/)
    assert len(samples) == MLVU_TOTAL
    assert Counter(s.category for s in samples) == MLVU_REPLICA_COUNTS
    counts = _problem_counts(benchmark)
    assert counts["answer_not_in_options"] == 2
    assert counts["repeated_options"] == 8
    assert counts["empty_question"] == 1
    assert counts["question_count_shortfall"] == 7  # a replica of every task file is short of its published count
    assert counts["missing_media"] == MLVU_TOTAL  # no videos written in this test
    assert "data/2_needle.json: 8 questions loaded, 355 published (347 missing)" in _details(
        benchmark, "question_count_shortfall"
    )
    by_id = {s.id: s for s in samples}

    # The two needle questions whose answer is not a candidate are kept, with no correct letter.
    for index, options in [
        (2, ["Painting", "Flying the kite", "Reading a book", "Watering plants"]),
        (5, ["Watering plants", "Reading a book", "Painting", "Flying the kite"]),
    ]:
        sample = by_id[f"2_needle/{index}"]
        assert sample.question == "What is the woman on the rooftop doing at sunset?"
        assert (sample.options, sample.answer) == (options, None)
        assert sample.meta["answer_text"] == "Flying a large red box kite"
    assert any("2_needle.json[2]" in d for d in _details(benchmark, "answer_not_in_options"))

    first = by_id["2_needle/0"]
    assert (first.question, first.answer, first.category) == (
        "What does the cat on the windowsill knock over?",
        "A",
        "Needle QA",
    )
    assert first.media[0]["path"].endswith("video/2_needle/needle_911.mp4")
    assert by_id["3_ego/0"].question == "Where did I leave the green scissors "  # kept as published

    # Repeated candidates: the official letter is the last occurrence.
    plot = by_id["1_plotQA/4"]
    assert (plot.options, plot.answer) == (["Two", "Five", "Five", "Nine"], "C")  # not B
    assert by_id["1_plotQA/5"].answer == "D"  # "Bakery" first and last
    assert by_id["7_topic_reasoning/3"].answer == "D"  # "Kitchen" first and last
    assert by_id["6_anomaly_reco/3"].answer == "C"  # "Vandalism" at A and C
    empty = by_id["7_topic_reasoning/2"]  # empty question and candidates, kept as the official script
    assert (empty.question, empty.options, empty.answer) == ("", ["", "", "", ""], "D")
    assert any("7_topic_reasoning.json[2]" in d for d in _details(benchmark, "empty_question"))
    # The repeated candidate is not the answer: letter unchanged.
    assert (by_id["1_plotQA/2"].options, by_id["1_plotQA/2"].answer) == (["Green", "Purple", "Orange", "Green"], "C")
    anomaly = by_id["6_anomaly_reco/2"]
    assert (anomaly.options, anomaly.answer) == (["Explosion", "Arrest", "Fighting", "Explosion"], "B")
    two_empty = by_id["1_plotQA/3"]  # two empty candidates: reported as repeated, not as an empty question
    assert (two_empty.options[0], two_empty.options[3], two_empty.answer) == ("", "", "B")
    assert not any("1_plotQA" in d for d in _details(benchmark, "empty_question"))


def test_mlvu_hub_and_script_video_folders(tmp_path):
    data = _copy(tmp_path, "mlvu")
    (data / "data").rename(data / "json")  # the hub's layout: json/ and video/<file stem>/
    benchmark = get_benchmark("mlvu")
    hub = benchmark.load(data)
    assert len(hub) == MLVU_TOTAL
    assert hub[0].media[0]["path"] == str(data / "video" / "7_topic_reasoning" / "TRV-3.mp4")
    # MLVU's own script reads video/<task>/ without the number (video/topic_reasoning/...).
    make_mp4(data / "video" / "topic_reasoning" / "TRV-3.mp4", seconds=2, fps=2)
    script_layout = benchmark.load(data)
    assert script_layout[0].media[0]["path"] == str(data / "video" / "topic_reasoning" / "TRV-3.mp4")


def test_mlvu_end_to_end_keeps_and_counts_wrong_the_questions_without_their_answer(tmp_path):
    data = _copy(tmp_path, "mlvu")
    _mlvu_videos(data)
    benchmark = get_benchmark("mlvu")
    samples = benchmark.load(data)
    # Every question answered with its official letter; the two unanswerable needle questions get the
    # closest candidate ("Flying the kite"), which the official script scores wrong too.
    responses = {s.id: s.answer for s in samples if s.answer is not None}
    responses["2_needle/2"] = "B"
    responses["2_needle/5"] = "(D) Flying the kite"
    responses["1_plotQA/4"] = "C"  # the last "Five": right by the official rule

    results = scripted_eval(tmp_path, "mlvu", data, responses)
    metrics = results["mlvu"]["metrics"]
    assert metrics["n"] == MLVU_TOTAL
    assert metrics["failed"] == 0 and metrics["unparseable"] == 0
    needle = 100 * 6 / 8
    assert metrics["by_task"]["Needle QA"] == pytest.approx(needle)
    assert all(value == 100.0 for task, value in metrics["by_task"].items() if task != "Needle QA")
    assert metrics["m_avg"] == pytest.approx((6 * 100 + needle) / 7)
    assert metrics["accuracy"] == pytest.approx(100 * (MLVU_TOTAL - 2) / MLVU_TOTAL)

    by_id = {r["id"]: r for r in predictions(tmp_path / "out", "mlvu")}
    assert len(by_id) == MLVU_TOTAL
    for sample_id, extracted in [("2_needle/2", "B"), ("2_needle/5", "D")]:
        assert by_id[sample_id]["extracted"] == extracted
        assert by_id[sample_id]["correct"] is False
    assert by_id["1_plotQA/4"]["correct"] is True

    problems = results["mlvu"]["data_problems"]
    assert problems["counts"]["answer_not_in_options"] == 2
    assert problems["counts"]["repeated_options"] == 8
    assert problems["counts"]["question_count_shortfall"] == 7
    assert "missing_media" not in problems["counts"]
    assert scores(tmp_path / "out", "mlvu")["data_problems"] == problems


def test_mlvu_answer_b_of_a_repeated_answer_is_wrong_as_in_the_official_script(tmp_path):
    data = _copy(tmp_path, "mlvu")
    _mlvu_videos(data)
    samples = get_benchmark("mlvu").load(data)
    responses = {s.id: s.answer for s in samples if s.answer is not None}
    responses["1_plotQA/4"] = "B"  # the first "Five": the official letter is C
    scripted_eval(tmp_path, "mlvu", data, responses)
    by_id = {r["id"]: r for r in predictions(tmp_path / "out", "mlvu")}
    assert (by_id["1_plotQA/4"]["extracted"], by_id["1_plotQA/4"]["correct"]) == ("B", False)


def test_mlvu_needle_questions_through_the_tiny_checkpoint(tmp_path):
    """The real model path (processor, video decoding, generation) on replica needle records 1-3, 2 unanswerable."""
    from videollama3.cli import main

    data = tmp_path / "MLVU"
    needle = json.loads((REAL / "mlvu" / "data" / "2_needle.json").read_text())[1:4]
    (data / "data").mkdir(parents=True)
    (data / "data" / "2_needle.json").write_text(json.dumps(needle))
    for record in needle:
        make_mp4(data / "video" / "2_needle" / record["video"], seconds=2, fps=2)
    output = tmp_path / "out"
    args = ["eval", "--benchmark", "mlvu", "--data-root", str(data), "--output", str(output), "--no-progress"]
    assert main(args + ["--model", str(FIXTURE_MODEL), "--device", "cpu", "--max-new-tokens", "3"]) == 0
    result = scores(output, "mlvu")
    assert (result["metrics"]["n"], result["metrics"]["failed"]) == (3, 0)
    by_id = {r["id"]: r for r in predictions(output, "mlvu")}
    assert isinstance(by_id["2_needle/1"]["response"], str)
    assert by_id["2_needle/1"]["correct"] is False  # whatever the model says: the answer is not a candidate
    counts = result["data_problems"]["counts"]
    assert counts["answer_not_in_options"] == 1
    assert counts["missing_file"] == 6  # the other task files are not in this copy


# --------------------------------------------------------------------------------------------------
# MVBench: replica of the hub's json/ (3 questions of each of the 20 tasks)
# --------------------------------------------------------------------------------------------------


def test_mvbench_replica(tmp_path):
    benchmark = get_benchmark("mvbench")
    samples = benchmark.load(_copy(tmp_path, "mvbench"))
    assert len(samples) == 60
    assert Counter(s.category for s in samples) == {task: 3 for task in mvbench.TASKS}
    counts = _problem_counts(benchmark)
    assert counts == Counter({"missing_media": 60, "question_count_shortfall": 20})
    assert "json/action_sequence.json: 3 questions loaded, 200 published (197 missing)" in _details(
        benchmark, "question_count_shortfall"
    )
    by_id = {s.id: s for s in samples}
    first = by_id["action_sequence/0"]
    assert first.question == "Once the window was open, what did the person do first?"
    assert first.options == ["Picked up the towel.", "Sat on the bed.", "Closed the laptop.", "Held the phone."]
    assert first.answer == "B"
    assert (first.media[0]["start"], first.media[0]["end"]) == (2.3, 14.9)
    assert first.media[0]["path"].endswith("video/star/Charades_v1_480/Q7K2M.mp4")
    episodic = by_id["episodic_reasoning/1"]  # a TVQA frame folder, trimmed; candidates with trailing spaces
    assert episodic.media[0]["path"].endswith("video/tvqa/frames_fps3_hq/s04e02_seg02_clip_07")
    assert (episodic.answer, len(episodic.options), episodic.options[1]) == ("B", 5, "A new microscope. ")
    assert by_id["episodic_reasoning/2"].options[2] == " The surgeon on duty"  # leading space kept
    assert (
        by_id["fine_grained_action/1"]
        .media[0]["path"]
        .endswith("video/Moments_in_Time_Raw/videos/validation/knitting/giphy-Hq2ZtB7mLw4Ne_1.mp4")
    )
    assert by_id["egocentric_navigation/2"].media[0]["path"].endswith("video/vlnqa/left/7045_frame12.mp4")
    localization = by_id["action_localization/0"]  # trimmed to start/end; accurate_* are extra fields
    assert (localization.media[0]["start"], localization.media[0]["end"], localization.answer) == (0.0, 18.4, "C")
    assert by_id["action_antonym/0"].media[0]["start"] is None  # untrimmed task
    assert (by_id["moving_attribute/0"].options, by_id["moving_attribute/0"].answer) == (["sphere", "cube"], "B")


# --------------------------------------------------------------------------------------------------
# Video-MME: replica of the hub's videomme/test-00000-of-00001.parquet
# --------------------------------------------------------------------------------------------------


def test_videomme_replica_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    schema = pq.read_schema(REAL / "videomme" / "videomme" / "test-00000-of-00001.parquet")
    assert str(schema.field("options").type) == "list<element: string>"
    assert {str(schema.field(name).type) for name in schema.names if name != "options"} == {"string"}

    benchmark = get_benchmark("videomme")  # without and with subtitles
    samples = benchmark.load(_copy(tmp_path, "videomme"))
    assert len(samples) == 2 * 18
    assert _problem_counts(benchmark) == Counter({"missing_media": 18, "question_count_shortfall": 1})
    assert _details(benchmark, "question_count_shortfall") == [
        "Video-MME annotations: 18 questions loaded, 2700 published (2682 missing)"
    ]
    without = [s for s in samples if not s.meta["subtitles"]]
    assert Counter(s.meta["duration"] for s in without) == {"short": 6, "medium": 6, "long": 6}
    first = samples[0]
    assert first.id == "001-1"
    assert first.question == "How many planets are shown lined up in the opening animation?"
    assert first.meta["option_lines"][2] == "C. Eight."
    assert (first.options[2], first.answer, first.category) == ("Eight.", "C", "Counting Problem")
    assert (first.meta["domain"], first.meta["video_id"]) == ("Knowledge", "001")
    assert first.media[0]["path"].endswith("data/aB3dE5fG7hJ.mp4")
    assert samples[1].id == "001-1@sub"


# --------------------------------------------------------------------------------------------------
# LongVideoBench: replica of lvb_val.json
# --------------------------------------------------------------------------------------------------


def test_longvideobench_replica(tmp_path):
    benchmark = get_benchmark("longvideobench")
    samples = benchmark.load(_copy(tmp_path, "longvideobench"))
    assert len(samples) == 10
    counts = _problem_counts(benchmark)
    assert counts["repeated_options"] == 4
    assert counts["missing_media"] == 2 * 10  # video and subtitle file of each question
    assert _details(benchmark, "question_count_shortfall") == [
        "lvb_val.json: 10 questions loaded, 1337 published (1327 missing)"
    ]
    by_id = {s.id: s for s in samples}
    first = samples[0]
    assert first.id == "Xq3Lp9wK2aB_0"
    assert first.question.startswith("Which subtitle lines are shown while the woman")
    assert (len(first.options), first.answer, first.category) == (4, "C", "TOS")
    assert first.meta["duration_group"] == 600 and first.meta["level"] == "L2-Relation"
    # correct_choice is an index: a repeated candidate keeps the letter the index gives (not the last one).
    assert by_id["Jd2kW8sQn4Y_0"].answer == "B"
    assert by_id["Jd2kW8sQn4Y_0"].meta["offset"] == 12.0  # starting_timestamp_for_subtitles
    tiktok = by_id["@gardenbites-7311048822650431190_0"]  # id and file names differ
    assert tiktok.answer == "D"
    assert tiktok.media[0]["path"].endswith("videos/7311048822650431190.mp4")
    assert tiktok.meta["subtitle_path"].endswith("subtitles/7311048822650431190_en.json")
    three = samples[-1]  # the only question with three candidates
    assert (three.id, three.options, three.answer) == ("Fc8yHu2Lm6o_0", ["Grey", "Purple", "White"], "B")


# --------------------------------------------------------------------------------------------------
# EgoSchema: replicas of subset_answers.json and of the first releases' questions.json
# --------------------------------------------------------------------------------------------------


def test_egoschema_replicas(tmp_path):
    data = _copy(tmp_path, "egoschema")
    answers = json.loads((data / "subset_answers.json").read_text())
    assert len(answers) == 12 and set(answers.values()) <= set(range(5))

    full = get_benchmark("egoschema_full")
    samples = full.load(data)
    assert len(samples) == 6
    first = samples[0]
    assert first.id == "0152e8d4-6a3f-4b9c-9d17-2e8f5a0c4b63"
    assert first.question.startswith("Over the course of the video, why does c keep going back and forth")
    assert first.options[1] == "C is carrying seedlings from the shed and planting them in the bed"
    assert first.answer is None  # not in the public subset
    assert _details(full, "question_count_shortfall") == [
        "questions.json: 6 questions loaded, 5031 published (5025 missing)"
    ]

    subset = get_benchmark("egoschema")
    assert subset.load(data) == []  # none of these questions has a public answer: reported
    assert _problem_counts(subset) == Counter({"question_count_shortfall": 1})
    assert _details(subset, "question_count_shortfall") == [
        "questions.json (the questions of subset_answers.json): 0 questions loaded, 12 published (12 missing)"
    ]

    # The very first questions.json had no "question" field: every record is reported, none kept.
    shutil.copy(REAL / "egoschema" / "without_question_field" / "questions.json", data / "questions.json")
    early = get_benchmark("egoschema_full")
    assert early.load(data) == []
    assert _problem_counts(early)["malformed_record"] == 6
    assert all("no question" in d for d in _details(early, "malformed_record"))


# --------------------------------------------------------------------------------------------------
# NExT-QA: replica of dataset/nextqa/test.csv and map_vid_vidorID.json
# --------------------------------------------------------------------------------------------------


def test_nextqa_replica(tmp_path):
    benchmark = get_benchmark("nextqa")
    samples = benchmark.load(_copy(tmp_path, "nextqa"))
    assert len(samples) == 12
    counts = _problem_counts(benchmark)
    assert counts == Counter({"missing_media": 12, "question_count_shortfall": 1})
    assert _details(benchmark, "question_count_shortfall") == [
        "test.csv: 12 questions loaded, 8564 published (8552 missing)"
    ]
    by_id = {s.id: s for s in samples}
    first = by_id["4410982317_4"]
    assert first.question == "what does the man do after picking up the red ball"
    assert (first.options[3], first.answer, first.category) == ("puts it in his pocket", "D", "Temporal")
    folder = json.loads((REAL / "nextqa" / "map_vid_vidorID.json").read_text())["4410982317"]
    assert first.media[0]["path"].endswith(f"NExTVideo/{folder}.mp4")
    # Repeated option texts; the answer is an index, so the letter is the index's.
    repeated = by_id["7719350028_0"]
    assert (repeated.options, repeated.answer) == (["a kite", "a bucket", "a bag", "a bucket", "a hat"], "B")
    assert by_id["2281744639_6"].answer == "E"  # "happy" at D and E, index 4 (the second)
    previous = by_id["2281744639_2"]  # type TP counts as TN (eval_mc.py)
    assert (previous.meta["type_code"], previous.meta["type"], previous.category) == ("TP", "TN", "Temporal")


# --------------------------------------------------------------------------------------------------
# TempCompass: replica of questions/<format>.json (GitHub release)
# --------------------------------------------------------------------------------------------------


def test_tempcompass_replica(tmp_path):
    benchmark = get_benchmark("tempcompass")
    samples = benchmark.load(_copy(tmp_path, "tempcompass"))
    assert Counter(s.meta["format"] for s in samples) == {"multi-choice": 10, "yes_no": 13, "caption_matching": 8}
    assert _problem_counts(benchmark) == Counter({"missing_media": 31, "question_count_shortfall": 3})
    assert "multi-choice questions: 10 questions loaded, 1580 published (1570 missing)" in _details(
        benchmark, "question_count_shortfall"
    )
    by_id = {s.id: s for s in samples}
    mc = by_id["multi-choice/2093851177/action/0"]
    assert mc.question == ("What is the woman busy doing?\nA. painting a fence\nB. washing a car\nC. watering a garden")
    assert (mc.options, mc.answer) == (["painting a fence", "washing a car", "watering a garden"], "B")
    assert by_id["multi-choice/2093851177/action/2"].meta["letters"] == "ABCD"  # four options
    reverse = by_id["multi-choice/2093851177_reverse/direction/0"]
    assert (reverse.answer, reverse.media[0]["path"].endswith("videos/2093851177_reverse.mp4")) == ("B", True)
    numbered = by_id["caption_matching/2093851177/action/0"]  # "Option 1/2" labels
    assert (numbered.meta["letters"], numbered.answer) == ("12", "2")
    sentence = by_id["caption_matching/2093851177/action/1"]  # "Sentence A/B" labels
    assert (sentence.meta["letters"], sentence.answer) == ("AB", "A")
    caption = by_id["caption_matching/2093851177/action/2"]  # "Caption A/B" labels
    assert (caption.meta["letters"], caption.answer) == ("AB", "B")
    assert by_id["yes_no/2093851177/action/0"].answer == "yes"
    assert by_id["yes_no/2093851177_reverse/direction/0"].answer == "no"


# --------------------------------------------------------------------------------------------------
# ActivityNet-QA: replica of dataset/test_q.json + test_a.json
# --------------------------------------------------------------------------------------------------


def test_activitynet_qa_replica(tmp_path):
    data = _copy(tmp_path, "activitynet_qa")
    make_mp4(data / "all_test" / "v_Rk2vQz8mT1a.mp4", seconds=2, fps=2)
    benchmark = get_benchmark("activitynet_qa")
    samples = benchmark.load(data)
    assert len(samples) == 12
    counts = _problem_counts(benchmark)
    assert _details(benchmark, "question_count_shortfall") == [
        "test_q.json / test_a.json: 12 questions loaded, 8000 published (7988 missing)"
    ]
    assert counts["missing_media"] == len([s for s in samples if "Rk2vQz8mT1a" not in s.id]) == 10
    first = samples[0]
    assert (first.id, first.question, first.answer, first.category) == (
        "v_Rk2vQz8mT1a_2",
        "is the woman holding an umbrella",
        "no",
        "Yes/No",
    )
    assert first.media[0]["path"] == str(data / "all_test" / "v_Rk2vQz8mT1a.mp4")
    by_id = {s.id: s for s in samples}
    assert (by_id["v_-pL4xW9nEs0_1"].answer, by_id["v_-pL4xW9nEs0_1"].category) == ("red", "Color")
    assert Counter(s.category for s in samples)["Yes/No"] == 3


# --------------------------------------------------------------------------------------------------
# MMVU: replica of data/validation.json
# --------------------------------------------------------------------------------------------------


def test_mmvu_replica(tmp_path):
    benchmark = get_benchmark("mmvu")
    samples = benchmark.load(_copy(tmp_path, "mmvu"))
    assert len(samples) == 10
    assert Counter(s.meta["question_type"] for s in samples) == {"open-ended": 5, "multiple-choice": 5}
    assert _problem_counts(benchmark) == Counter({"missing_media": 10, "question_count_shortfall": 1})
    assert _details(benchmark, "question_count_shortfall") == [
        "validation.json: 10 questions loaded, 1000 published (990 missing)"
    ]
    by_id = {s.id: s for s in samples}
    open_question = by_id["validation_0"]  # published with five empty choices
    assert (open_question.options, open_question.answer, open_question.category) == ([], "Impasto", "Art")
    assert open_question.media[0]["path"].endswith("videos/Art/12.mp4")
    choice = by_id["validation_1"]
    assert (choice.options, choice.answer) == (["20.0", "12.0", "24.0", "40.0", "8.0"], "A")
    assert choice.meta["choices"] == {"A": "20.0", "B": "12.0", "C": "24.0", "D": "40.0", "E": "8.0"}
    spaced = by_id["validation_2"]  # subject with a space, video folder with an underscore
    assert spaced.category == "Computer Science"
    assert spaced.media[0]["path"].endswith("videos/Computer_Science/7.mp4")


# --------------------------------------------------------------------------------------------------
# Charades-STA: replicas of a txt copy with an extra column and of the lmms-eval / VideoChat-Flash json
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["txt", "json"])
def test_charades_sta_replicas(tmp_path, layout):
    data = _copy(tmp_path, "charades_sta", layout)
    make_mp4(data / "Charades_v1_480" / "K2P7Q.mp4", seconds=2, fps=2)
    benchmark = get_benchmark("charades_sta")
    samples = benchmark.load(data)
    assert len(samples) == 12
    assert _problem_counts(benchmark) == Counter(
        {"missing_media": 12 - 3, "question_count_shortfall": 1}  # K2P7Q has 3 sentences
    )
    assert _details(benchmark, "question_count_shortfall")[0].endswith(
        ": 12 questions loaded, 3720 published (3708 missing)"
    )
    first = samples[0]
    assert first.id == "K2P7Q_0"
    assert first.question == (
        'Find the start and end time of the moment described by the query "person opens a cupboard" in the video. '
    )
    assert first.answer == (3.5, 9.8)
    assert first.media[0]["path"] == str(data / "Charades_v1_480" / "K2P7Q.mp4")
    assert samples[3].answer == (0.0, 6.2)  # H8WZ1, "a person is folding a towel."
