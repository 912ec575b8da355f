"""Tiny image benchmark datasets in their published layouts (see :mod:`tiny_datasets`)."""

from __future__ import annotations

import base64
from pathlib import Path

from eval_helpers import Case, make_png, png_bytes, write_json, write_parquet


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
