"""Tiny datasets in each benchmark's published layout, scripted answers and the metrics they must give.

Every ``build_<benchmark>(root)`` writes the dataset under ``root`` (generated PNGs and short H.264
MP4s), and returns a :class:`Case`: the benchmark name, its data root, the scripted response of every
sample id and the expected metrics (computed by hand in the comments).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
FIXTURE_MODEL = REPO_ROOT / "tests" / "fixtures" / "parity" / "model"
SCRIPTED = f"{HERE / 'scripted_predictor.py'}:ScriptedPredictor"


@dataclass
class Case:
    benchmark: str
    data_root: Path
    responses: dict[str, Any]
    expected: dict[str, float]  # "a.b.c" paths into scores["metrics"]
    extra_args: list[str] = field(default_factory=list)
    needs_parquet: bool = False


# --------------------------------------------------------------------------------------------------
# Media
# --------------------------------------------------------------------------------------------------

_VIDEO_CACHE: dict[tuple, bytes] = {}


def make_png(path: Path, size=(56, 42), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def png_bytes(size=(56, 42), seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_mp4(path: Path, seconds: int = 4, fps: int = 4, size=(56, 42)) -> Path:
    """A short H.264 video of moving noise (made once per shape, then copied)."""
    import av

    key = (seconds, fps, size)
    if key not in _VIDEO_CACHE:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            rng = np.random.default_rng(1)
            for _ in range(seconds * fps):
                frame = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        _VIDEO_CACHE[key] = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_VIDEO_CACHE[key])
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
    return path


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


def run_eval(case: Case, output: Path, *extra: str, scripted: bool = True, script_dir: Path | None = None) -> int:
    from videollama3.cli import main

    args = ["eval", "--benchmark", case.benchmark, "--data-root", str(case.data_root), "--output", str(output)]
    if scripted:
        script = (script_dir or output.parent) / f"{case.benchmark}_script.json"
        script.write_text(json.dumps(case.responses))
        args += ["--model", str(script), "--predictor", SCRIPTED]
    args += ["--no-progress", *case.extra_args, *extra]
    return main(args)


def scores(output: Path, benchmark: str) -> dict[str, Any]:
    return json.loads((output / benchmark / "scores.json").read_text())


def metric(metrics: dict[str, Any], path: str) -> Any:
    """``metrics["a"]["b.c"]`` for ``"a.b.c"``: keys may contain dots (``R1@0.5``), the longest wins."""
    if path in metrics:
        return metrics[path]
    for cut in range(len(path) - 1, 0, -1):
        if path[cut] == "." and path[:cut] in metrics and isinstance(metrics[path[:cut]], dict):
            return metric(metrics[path[:cut]], path[cut + 1 :])
    raise KeyError(path)


def seen(output: Path, benchmark: str) -> dict[str, dict]:
    path = output.parent / f"{benchmark}_script.seen.jsonl"
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def predictions(output: Path, benchmark: str) -> list[dict]:
    return [json.loads(line) for line in (output / benchmark / "predictions.jsonl").read_text().splitlines()]


def python() -> str:
    return sys.executable


# --------------------------------------------------------------------------------------------------
# Video benchmarks
# --------------------------------------------------------------------------------------------------


def build_mvbench(root: Path) -> Case:
    data = root / "MVBench"
    write_json(
        data / "json" / "action_sequence.json",
        [
            {
                "video": "a1.mp4",
                "question": "What did the person do first?",
                "candidates": ["pick up", "sit down"],
                "answer": "pick up",
                "start": 0.0,
                "end": 3.0,
            },
            {
                "video": "a1.mp4",
                "question": "What did the person do last?",
                "candidates": ["open door", "close door"],
                "answer": "open door",
                "start": 1.0,
                "end": 4.0,
            },
        ],
    )
    write_json(
        data / "json" / "object_shuffle.json",
        [
            {
                "video": "p1.mp4",
                "question": "Where is the ball?",
                "candidates": ["left", "middle", "right"],
                "answer": "right",
            },
            {
                "video": "p1.mp4",
                "question": "Where is the cup?",
                "candidates": ["left", "middle", "right"],
                "answer": "left",
            },
        ],
    )
    write_json(
        data / "json" / "episodic_reasoning.json",
        [
            {
                "video": "clip1",
                "question": "Who speaks?",
                "candidates": ["Ross", "Rachel"],
                "answer": "Ross",
                "start": 0.0,
                "end": 2.0,
            }
        ],
    )
    make_mp4(data / "video" / "star" / "Charades_v1_480" / "a1.mp4")
    make_mp4(data / "video" / "perception" / "videos" / "p1.mp4")
    for i in range(6):  # a TVQA clip: frames at 3 fps
        make_png(data / "video" / "tvqa" / "frames_fps3_hq" / "clip1" / f"{i + 1:05d}.jpg", seed=i)
    responses = {
        "action_sequence/0": "(A) pick up",  # right
        "action_sequence/1": "B",  # wrong
        "object_shuffle/0": "The answer is C",  # right
        "object_shuffle/1": "I don't know",  # unparseable
        "episodic_reasoning/0": "Ross",  # right, by option text
    }
    expected = {
        "accuracy": 60.0,
        "by_task.Action Sequence": 50.0,
        "by_task.Object Shuffle": 50.0,
        "by_task.Episodic Reasoning": 100.0,
        "unparseable": 1,
        "n": 5,
    }
    return Case("mvbench", data, responses, expected)


def build_videomme(root: Path) -> Case:
    data = root / "Video-MME"
    rows = [
        {
            "video_id": "001",
            "duration": "short",
            "domain": "Knowledge",
            "sub_category": "Humanity",
            "url": "u1",
            "videoID": "vidA",
            "question_id": "001-1",
            "task_type": "Counting Problem",
            "question": "How many cats?",
            "options": ["A. one", "B. two", "C. three", "D. four"],
            "answer": "A",
        },
        {
            "video_id": "002",
            "duration": "long",
            "domain": "Sports",
            "sub_category": "Football",
            "url": "u2",
            "videoID": "vidB",
            "question_id": "002-1",
            "task_type": "Action Recognition",
            "question": "What happens?",
            "options": ["A. run", "B. jump", "C. kick", "D. fall"],
            "answer": "C",
        },
    ]
    write_parquet(data / "videomme" / "test-00000-of-00001.parquet", rows)
    make_mp4(data / "data" / "vidA.mp4")
    make_mp4(data / "data" / "vidB.mp4")
    # Frames at 0, 1, 2, 3 s: only the first cue covers one (t = 1), the second lies between frames.
    (data / "subtitle").mkdir(parents=True)
    (data / "subtitle" / "vidA.srt").write_text(
        "1\n00:00:00,500 --> 00:00:01,500\nhello\n<i>world</i>\n\n2\n00:00:02,200 --> 00:00:02,800\nnever shown\n"
    )
    responses = {
        "001-1": "A",  # right
        "002-1": "B",  # wrong
        "001-1@sub": "A. one",  # right
        "002-1@sub": "The best answer is C.",  # right
    }
    expected = {
        "accuracy_wo_sub": 50.0,
        "accuracy_w_sub": 100.0,
        "wo_sub.by_duration.short": 100.0,
        "wo_sub.by_duration.long": 0.0,
        "w_sub.by_task.Action Recognition": 100.0,
        "n": 4,
    }
    return Case("videomme", data, responses, expected, needs_parquet=True)


def build_mlvu(root: Path) -> Case:
    data = root / "MLVU"
    write_json(
        data / "json" / "1_plotQA.json",
        [
            {
                "video": "m1.mp4",
                "duration": 4,
                "question": "Who wins?",
                "candidates": ["hero", "villain"],
                "answer": "hero",
                "question_type": "plotQA",
            },
            {
                "video": "m1.mp4",
                "duration": 4,
                "question": "Where?",
                "candidates": ["city", "forest"],
                "answer": "forest",
                "question_type": "plotQA",
            },
        ],
    )
    write_json(
        data / "json" / "4_count.json",
        [
            {
                "video": "c1.mp4",
                "duration": 4,
                "question": "How many jumps?",
                "candidates": ["2", "3", "4"],
                "answer": "3",
                "question_type": "count",
            }
        ],
    )
    make_mp4(data / "video" / "1_plotQA" / "m1.mp4")
    make_mp4(data / "video" / "4_count" / "c1.mp4")
    responses = {"1_plotQA/0": "(A)", "1_plotQA/1": "A", "4_count/0": "three"}  # right, wrong, right (number word)
    expected = {"m_avg": 75.0, "accuracy": 200 / 3, "by_task.Plot QA": 50.0, "by_task.Action Count": 100.0}
    return Case("mlvu", data, responses, expected)


def build_longvideobench(root: Path) -> Case:
    data = root / "LongVideoBench"
    base = {
        "duration_group": 15,
        "level": "L1-Perception",
        "topic_category": "NP-News-Programs",
        "starting_timestamp_for_subtitles": 0,
        "duration": 4.0,
    }
    write_json(
        data / "lvb_val.json",
        [
            {
                **base,
                "id": "q1",
                "video_id": "v1",
                "video_path": "v1.mp4",
                "subtitle_path": "v1_en.json",
                "question": "What is said first?",
                "candidates": ["hi", "bye", "ok", "no"],
                "correct_choice": 1,
                "question_category": "S2E",
            },
            {
                **base,
                "id": "q2",
                "video_id": "v2",
                "video_path": "v2.mp4",
                "subtitle_path": "v2_en.json",
                "question": "What color?",
                "candidates": ["red", "blue", "green", "gray"],
                "correct_choice": 0,
                "question_category": "E2O",
                "level": "L2-Relation",
            },
        ],
    )
    make_mp4(data / "videos" / "v1.mp4")
    make_mp4(data / "videos" / "v2.mp4")
    write_json(data / "subtitles" / "v1_en.json", [{"timestamp": [0.5, 1.5], "text": "hello there"}])
    write_json(
        data / "subtitles" / "v2_en.json", [{"start": "00:00:01.500", "end": "00:00:03.500", "line": "a red car"}]
    )
    responses = {"q1": "B", "q2": "E"}  # right; E is not an option -> unparseable
    expected = {"accuracy": 50.0, "unparseable": 1, "by_level.L1-Perception": 100.0, "by_level.L2-Relation": 0.0}
    return Case("longvideobench", data, responses, expected)


def _egoschema_data(root: Path) -> Path:
    data = root / "EgoSchema"
    options = {f"option {i}": f"choice {i}" for i in range(5)}
    write_json(
        data / "questions.json",
        [
            {"q_uid": f"uid{i}", "google_drive_id": "x", "question": f"What is C doing {i}?", **options}
            for i in range(3)
        ],
    )
    write_json(data / "subset_answers.json", {"uid0": 1, "uid2": 3})
    for i in range(3):
        make_mp4(data / "good_clips_git" / f"uid{i}.mp4")
    return data


def build_egoschema(root: Path) -> Case:
    responses = {"uid0": "B", "uid2": "(C) choice 2"}  # right, wrong
    return Case("egoschema", _egoschema_data(root), responses, {"accuracy": 50.0, "n": 2})


def build_perception_test(root: Path) -> Case:
    data = root / "PerceptionTest"
    write_json(
        data / "mc_question_valid.json",
        {
            "video_1": {
                "metadata": {"video_id": "video_1", "num_frames": 16},
                "mc_question": [
                    {
                        "id": 0,
                        "question": "What is moved?",
                        "options": ["cup", "box", "pen"],
                        "answer_id": 0,
                        "area": "memory",
                        "reasoning": "descriptive",
                        "tag": ["motion"],
                    },
                    {
                        "id": 1,
                        "question": "Is it full?",
                        "options": ["yes", "no", "unknown"],
                        "answer_id": 2,
                        "area": "physics",
                        "reasoning": "counterfactual",
                        "tag": [],
                    },
                ],
            }
        },
    )
    make_mp4(data / "valid_videos" / "video_1.mp4")
    responses = {"video_1/0": "A", "video_1/1": "option B"}  # right, wrong
    expected = {"accuracy": 50.0, "by_area.memory": 100.0, "by_area.physics": 0.0, "by_reasoning.descriptive": 100.0}
    return Case("perception_test", data, responses, expected)


def build_nextqa(root: Path) -> Case:
    data = root / "NExT-QA"
    data.mkdir(parents=True)
    header = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
    (data / "test.csv").write_text(
        header
        + "4010069381,16,56,42,why did the boy cry,2,0,CW,he fell,he ate,he lost his toy,he ran,he sat\n"
        + "4010069381,16,56,42,what did the boy do after crying,0,1,TN,hug mom,eat,sleep,run,jump\n"
        + "4010069381,16,56,42,where is the boy,1,2,DL,park,home,school,beach,car\n"
    )
    write_json(data / "map_vid_vidorID.json", {"4010069381": "1001/4010069381"})
    make_mp4(data / "NExTVideo" / "1001" / "4010069381.mp4")
    responses = {"4010069381_0": "C", "4010069381_1": "hug mom", "4010069381_2": "A"}  # right, right, wrong
    expected = {
        "accuracy": 200 / 3,
        "by_category.Causal": 100.0,
        "by_category.Temporal": 100.0,
        "by_category.Descriptive": 0.0,
    }
    return Case("nextqa", data, responses, expected)


def build_tempcompass(root: Path) -> Case:
    data = root / "TempCompass"
    # multi-choice in the lmms-lab parquet layout, the other formats in the GitHub json layout.
    write_parquet(
        data / "multi-choice" / "test-00000-of-00001.parquet",
        [
            {
                "video_id": "t1",
                "question": "Which way does the car go?\nA. left\nB. right\nC. up",
                "answer": "B. right",
                "dim": "direction",
            }
        ],
    )
    write_json(
        data / "questions" / "yes_no.json",
        {
            "t1": {
                "direction": [
                    {"question": "Does the car go right?", "answer": "yes"},
                    {"question": "Does the car go left?", "answer": "no"},
                ]
            }
        },
    )
    write_json(
        data / "questions" / "caption_matching.json",
        {
            "t1": {
                "speed": [
                    {
                        "question": "Which caption matches?\nCaption A: a fast car\nCaption B: a slow car",
                        "answer": "Caption B: a slow car",
                    }
                ]
            }
        },
    )
    make_mp4(data / "videos" / "t1.mp4")
    responses = {
        "multi-choice/t1/direction/0": "B",  # right
        "yes_no/t1/direction/0": "Yes, it does.",  # right
        "yes_no/t1/direction/1": "Yes",  # wrong
        "caption_matching/t1/speed/0": "Caption B",  # right
    }
    expected = {
        "accuracy": 75.0,
        "by_format.multi-choice": 100.0,
        "by_format.yes_no": 50.0,
        "by_format.caption_matching": 100.0,
        "by_dim.speed": 100.0,
    }
    return Case("tempcompass", data, responses, expected, needs_parquet=True)


def build_charades_sta(root: Path) -> Case:
    data = root / "Charades-STA"
    data.mkdir(parents=True)
    (data / "charades_sta_test.txt").write_text(
        "AB12C 0.0 2.0##person opens the door.\nAB12C 1.0 3.0##person sits down.\nAB12C 2.0 4.0##person drinks.\n"
    )
    make_mp4(data / "Charades_v1_480" / "AB12C.mp4")
    responses = {
        "AB12C_0": "0.0-2.0 s",  # IoU 1
        "AB12C_1": "00:02-00:04",  # [2, 4] vs [1, 3]: 1 / 3
        "AB12C_2": "no idea",  # unparseable: 0
    }
    expected = {
        "mIoU": 100 * (1 + 1 / 3) / 3,
        "R1@0.3": 200 / 3,
        "R1@0.5": 100 / 3,
        "R1@0.7": 100 / 3,
        "unparseable": 1,
    }
    return Case("charades_sta", data, responses, expected)


# --------------------------------------------------------------------------------------------------
# Image benchmarks
# --------------------------------------------------------------------------------------------------


def build_docvqa(root: Path) -> Case:
    data = root / "DocVQA"
    records = [
        {
            "questionId": 11,
            "question": "Who signed?",
            "question_types": ["handwritten"],
            "image": "documents/d1.png",
            "docId": 1,
            "answers": ["Smith", "Mr. Smith"],
        },
        {
            "questionId": 12,
            "question": "What number?",
            "question_types": ["layout"],
            "image": "documents/d1.png",
            "docId": 1,
            "answers": ["1235"],
        },
        {
            "questionId": 13,
            "question": "What date?",
            "question_types": ["layout"],
            "image": "documents/d2.png",
            "docId": 2,
            "answers": ["abc"],
        },
    ]
    write_json(
        data / "val" / "val_v1.0_withQT.json", {"dataset_name": "docvqa", "dataset_split": "val", "data": records}
    )
    make_png(data / "val" / "documents" / "d1.png")
    make_png(data / "val" / "documents" / "d2.png", seed=1)
    responses = {"11": "smith", "12": "1234", "13": "totally wrong"}  # ANLS 1, 0.75, 0
    expected = {"anls": 100 * 1.75 / 3, "by_question_type.layout": 100 * 0.75 / 2, "n": 3}
    return Case("docvqa", data, responses, expected)


def build_infovqa(root: Path) -> Case:
    data = root / "InfoVQA"
    records = [
        {
            "questionId": 1,
            "question": "Share of cats?",
            "image_local_name": "i1.jpeg",
            "answers": ["25%"],
            "answer_type": ["single span"],
        },
        {
            "questionId": 2,
            "question": "How many?",
            "image_local_name": "i1.jpeg",
            "answers": ["4"],
            "answer_type": ["number"],
        },
    ]
    write_json(data / "infographicsVQA_val_v1.0_withQT.json", {"dataset_name": "infographicVQA", "data": records})
    make_png(data / "infographicsvqa_images" / "i1.jpeg")
    responses = {"1": "25%", "2": "4.0"}  # ANLS 1; "4.0" vs "4": distance 2/3 >= 0.5 -> 0
    return Case("infovqa", data, responses, {"anls": 50.0})


def build_chartqa(root: Path) -> Case:
    data = root / "ChartQA" / "ChartQA Dataset"
    write_json(
        data / "test" / "test_human.json",
        [
            {"imgname": "c1.png", "query": "What is the peak?", "label": "10"},
            {"imgname": "c1.png", "query": "Is it rising?", "label": "Yes"},
        ],
    )
    write_json(
        data / "test" / "test_augmented.json",
        [
            {"imgname": "c2.png", "query": "What is the value of A?", "label": "10"},
            {"imgname": "c2.png", "query": "What share?", "label": "0.5"},
        ],
    )
    make_png(data / "test" / "png" / "c1.png")
    make_png(data / "test" / "png" / "c2.png", seed=2)
    responses = {
        "human/0": "10.4",  # within 5%: right
        "human/1": "yes",  # case-insensitive: right
        "augmented/0": "12",  # 20% off: wrong
        "augmented/1": "50%",  # 0.5: right
    }
    expected = {"relaxed_accuracy": 75.0, "by_split.human": 100.0, "by_split.augmented": 50.0}
    return Case("chartqa", root / "ChartQA", responses, expected)


def build_ai2d(root: Path) -> Case:
    data = root / "ai2d"
    write_json(
        data / "questions" / "0.png.json",
        {
            "imageName": "0.png",
            "questions": {
                "Which stage comes first?": {
                    "abcLabel": False,
                    "answerTexts": ["egg", "larva", "pupa", "adult"],
                    "correctAnswer": 0,
                    "questionId": "0.png-0",
                },
                "Which is the predator?": {
                    "abcLabel": False,
                    "answerTexts": ["frog", "fly", "grass", "sun"],
                    "correctAnswer": 0,
                    "questionId": "0.png-1",
                },
            },
        },
    )
    write_json(
        data / "questions" / "1.png.json",
        {
            "imageName": "1.png",
            "questions": {
                "Not in the test split?": {
                    "abcLabel": False,
                    "answerTexts": ["a", "b"],
                    "correctAnswer": 0,
                    "questionId": "1.png-0",
                },
            },
        },
    )
    make_png(data / "images" / "0.png")
    make_png(data / "images" / "1.png", seed=3)
    (data / "ai2d_test_ids.csv").write_text("0\n")
    responses = {"0.png-0": "A. egg", "0.png-1": "C"}  # right, wrong
    return Case("ai2d", data, responses, {"accuracy": 50.0, "n": 2})


def build_ai2d_tsv(root: Path) -> Case:
    data = root / "ai2d_tsv"
    data.mkdir(parents=True)
    image = base64.b64encode(png_bytes()).decode()
    lines = ["index\tquestion\tA\tB\tC\tD\tanswer\timage\tcategory"]
    lines.append(f"0\tWhat eats grass?\tcow\tlion\tsun\tsoil\tA\t{image}\tfoodChainsWebs")
    lines.append(f"1\tWhat gives light?\tcow\tlion\tsun\tsoil\tC\t{image}\tlifeCycles")
    (data / "AI2D_TEST.tsv").write_text("\n".join(lines) + "\n")
    responses = {"0": "The answer is A", "1": "sun"}
    return Case("ai2d", data, responses, {"accuracy": 100.0, "by_category.lifeCycles": 100.0})


def build_mmmu(root: Path) -> Case:
    data = root / "MMMU"
    image = {"bytes": png_bytes(), "path": "x.png"}
    empty = {"bytes": None, "path": None}
    art = [
        {
            "id": "validation_Art_Theory_1",
            "question": "Which style is <image 1>?",
            "options": "['Baroque', 'Cubism', 'Gothic']",
            "explanation": "",
            "image_1": image,
            "image_2": empty,
            "img_type": "['Paintings']",
            "answer": "B",
            "topic_difficulty": "Easy",
            "question_type": "multiple-choice",
            "subfield": "Art",
        },
        {
            "id": "validation_Art_Theory_2",
            "question": "How many figures are in <image 1> and <image 2>?",
            "options": "[]",
            "explanation": "",
            "image_1": image,
            "image_2": image,
            "img_type": "['Paintings']",
            "answer": "24",
            "topic_difficulty": "Easy",
            "question_type": "open",
            "subfield": "Art",
        },
    ]
    math = [
        {
            "id": "validation_Math_1",
            "question": "Which graph <image 1>?",
            "options": "['y=x', 'y=2x']",
            "explanation": "",
            "image_1": image,
            "image_2": empty,
            "img_type": "['Plots']",
            "answer": "A",
            "topic_difficulty": "Hard",
            "question_type": "multiple-choice",
            "subfield": "Calculus",
        },
    ]
    write_parquet(data / "Art_Theory" / "validation-00000-of-00001.parquet", art)
    write_parquet(data / "Math" / "validation-00000-of-00001.parquet", math)
    responses = {
        "validation_Art_Theory_1": "(B)",  # right
        "validation_Art_Theory_2": "There are 24 figures, so the answer is 24.",  # right
        "validation_Math_1": "I am not sure",  # unparseable (no random guess)
    }
    expected = {
        "accuracy": 200 / 3,
        "by_discipline.Art and Design": 100.0,
        "by_discipline.Science": 0.0,
        "unparseable": 1,
    }
    return Case("mmmu", data, responses, expected, needs_parquet=True)


def build_mathvista(root: Path) -> Case:
    data = root / "MathVista"
    meta = {"task": "figure question answering", "skills": ["arithmetic reasoning"], "source": "x", "split": "testmini"}
    problems = {
        "1": {
            "question": "How many sides?",
            "image": "images/1.jpg",
            "choices": ["3", "4", "5"],
            "unit": None,
            "precision": None,
            "answer": "4",
            "question_type": "multi_choice",
            "answer_type": "text",
            "metadata": meta,
        },
        "2": {
            "question": "What is the total?",
            "image": "images/2.jpg",
            "choices": None,
            "unit": None,
            "precision": None,
            "answer": "12",
            "question_type": "free_form",
            "answer_type": "integer",
            "metadata": meta,
        },
        "3": {
            "question": "What is the ratio?",
            "image": "images/1.jpg",
            "choices": None,
            "unit": None,
            "precision": 1,
            "answer": "1.5",
            "question_type": "free_form",
            "answer_type": "float",
            "metadata": {**meta, "task": "math word problem"},
        },
        "4": {
            "question": "How old is he?",
            "image": "images/2.jpg",
            "choices": None,
            "unit": "years",
            "precision": None,
            "answer": "7",
            "question_type": "free_form",
            "answer_type": "integer",
            "metadata": meta,
        },
    }
    write_json(data / "testmini.json", problems)
    write_json(
        data / "query.json",
        {pid: f"Hint: official query {pid}\nQuestion: {p['question']}" for pid, p in problems.items()},
    )
    make_png(data / "images" / "1.jpg")
    make_png(data / "images" / "2.jpg", seed=4)
    responses = {"1": "(B) 4", "2": "3 + 9, so the answer is 12.", "3": "approximately 1.46", "4": "I cannot tell"}
    expected = {
        "accuracy": 75.0,
        "by_question_type.free_form": 200 / 3,
        "by_question_type.multi_choice": 100.0,
        "by_task.math word problem": 100.0,
        "unparseable": 1,
    }
    return Case("mathvista", data, responses, expected)


def build_ocrbench(root: Path) -> Case:
    data = root / "OCRBench"
    write_json(
        data / "OCRBench.json",
        [
            {
                "dataset_name": "IIIT5K",
                "id": 0,
                "image_path": "IIIT5K/1.png",
                "question": "What is written?",
                "answers": ["stop"],
                "type": "Regular Text Recognition",
            },
            {
                "dataset_name": "HME100k",
                "id": 1,
                "image_path": "HME100k/2.png",
                "question": "Write the formula.",
                "answers": ["x^2+1"],
                "type": "Handwritten Mathematical Expression Recognition",
            },
            {
                "dataset_name": "docVQA",
                "id": 2,
                "image_path": "docVQA/3.png",
                "question": "Total?",
                "answers": "42",
                "type": "Doc-oriented VQA",
            },
        ],
    )
    make_png(data / "OCRBench_Images" / "IIIT5K" / "1.png")
    make_png(data / "OCRBench_Images" / "HME100k" / "2.png", seed=5)
    make_png(data / "OCRBench_Images" / "docVQA" / "3.png", seed=6)
    responses = {"0": "STOP sign", "1": "x ^ 2 + 1", "2": "41"}
    expected = {
        "score": 2,
        "accuracy": 200 / 3,
        "text_recognition": 1,
        "by_type.Handwritten Mathematical Expression Recognition": 1,
    }
    return Case("ocrbench", data, responses, expected)


def build_realworldqa(root: Path) -> Case:
    data = root / "RealWorldQA"
    image = {"bytes": png_bytes(), "path": "0.webp"}
    rows = [
        {
            "image": image,
            "question": "Which lane is the car in?\nA. left\nB. middle\nC. right\nPlease answer directly "
            "with only the letter of the correct option and nothing else.",
            "answer": "B",
        },
        {
            "image": image,
            "question": "How many cars are there?\nPlease answer directly with a single word or number.",
            "answer": "3",
        },
        {
            "image": image,
            "question": "Which side is the sign?\nA. left\nB. right\nPlease answer directly with only "
            "the letter of the correct option and nothing else.",
            "answer": "A",
        },
    ]
    write_parquet(data / "data" / "test-00000-of-00001.parquet", rows)
    responses = {"test-00000-of-00001/0": "B.", "test-00000-of-00001/1": "3.", "test-00000-of-00001/2": "right"}
    return Case("realworldqa", data, responses, {"accuracy": 200 / 3, "n": 3}, needs_parquet=True)


def build_mme(root: Path) -> Case:
    data = root / "MME" / "MME_Benchmark_release_version"
    for name in ("000", "001"):
        make_png(data / "existence" / f"{name}.jpg")
    (data / "existence" / "000.txt").write_text("Is there a dog?\tYes\nIs there a cat?\tNo\n")
    (data / "existence" / "001.txt").write_text("Is there a car?\tYes\nIs there a bus?\tNo\n")
    make_png(data / "artwork" / "images" / "10002.jpg")
    (data / "artwork" / "questions_answers_YN").mkdir(parents=True)
    (data / "artwork" / "questions_answers_YN" / "10002.txt").write_text(
        "Is this by Monet? Please answer yes or no.\tYes\nIs this by Dali? Please answer yes or no.\tNo\n"
    )
    make_png(data / "commonsense_reasoning" / "0001.png")
    (data / "commonsense_reasoning" / "0001.txt").write_text("Should I wear a coat?\tYes\nIs it hot?\tNo\n")
    responses = {
        "existence/000.jpg/0": "Yes",
        "existence/000.jpg/1": "No",  # both right
        "existence/001.jpg/0": "Yes, there is.",
        "existence/001.jpg/1": "Yes",  # one right
        "artwork/10002.jpg/0": "yes",
        "artwork/10002.jpg/1": "no",  # both right
        "commonsense_reasoning/0001.png/0": "maybe",
        "commonsense_reasoning/0001.png/1": "No.",  # unparseable, right
    }
    # existence: acc 75 + acc+ 50 = 125; artwork: 200 -> perception 325. commonsense: 50 + 0 -> cognition 50.
    expected = {
        "perception": 325.0,
        "cognition": 50.0,
        "total": 375.0,
        "subtasks.existence.acc_plus": 50.0,
        "unparseable": 1,
    }
    return Case("mme", root / "MME", responses, expected)


def build_gqa(root: Path) -> Case:
    data = root / "GQA"
    write_json(
        data / "testdev_balanced_questions.json",
        {
            "201307251": {
                "imageId": "n1",
                "question": "Is the sky blue?",
                "answer": "yes",
                "fullAnswer": "Yes.",
                "types": {"structural": "verify", "semantic": "attr", "detailed": "x"},
            },
            "201640614": {
                "imageId": "n1",
                "question": "What color is the car?",
                "answer": "blue",
                "fullAnswer": "Blue.",
                "types": {"structural": "query", "semantic": "attr", "detailed": "y"},
            },
        },
    )
    make_png(data / "images" / "n1.jpg")
    responses = {"201307251": "Yes.", "201640614": "red"}
    return Case("gqa", data, responses, {"accuracy": 50.0, "by_structural.verify": 100.0, "by_semantic.attr": 50.0})


BUILDERS = {
    "mvbench": build_mvbench,
    "videomme": build_videomme,
    "mlvu": build_mlvu,
    "longvideobench": build_longvideobench,
    "egoschema": build_egoschema,
    "perception_test": build_perception_test,
    "nextqa": build_nextqa,
    "tempcompass": build_tempcompass,
    "charades_sta": build_charades_sta,
    "docvqa": build_docvqa,
    "infovqa": build_infovqa,
    "chartqa": build_chartqa,
    "ai2d": build_ai2d,
    "ai2d_tsv": build_ai2d_tsv,
    "mmmu": build_mmmu,
    "mathvista": build_mathvista,
    "ocrbench": build_ocrbench,
    "realworldqa": build_realworldqa,
    "mme": build_mme,
    "gqa": build_gqa,
}


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
