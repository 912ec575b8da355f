"""Tiny video benchmark datasets in their published layouts (see :mod:`tiny_datasets`)."""

from __future__ import annotations

from pathlib import Path

from eval_helpers import Case, make_mp4, make_png, write_json, write_parquet


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
