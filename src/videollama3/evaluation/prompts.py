"""The official VideoLLaMA3 evaluation prompts (the release's ``evaluation/`` code), in one place.

Each benchmark module builds its instruction with these, so the exact wording (punctuation, line
breaks, trailing spaces) is easy to check against the release.
"""

from __future__ import annotations

from collections.abc import Sequence

# Video multiple choice (MVBench, MLVU, NExT-QA, Perception Test).
MCQ_DIRECT = "Answer with the option's letter from the given choices directly and only give the best option."
# Image multiple choice (AI2D, MMMU, LongVideoBench).
MCQ_LETTER = "Answer with the option's letter from the given choices directly."
# Short answers.
SHORT_ANSWER_USING = "Answer the question using a single word or phrase."  # ChartQA, InfoVQA, GQA, MME, MMMU open
SHORT_ANSWER_WITH = "Answer the question with a single word or phrase."  # DocVQA, OCRBench
GROUNDING_SUFFIX = "Please output the start and end timestamps in seconds."


def option_lines(options: Sequence[str], letters: str, style: str = "({letter}) {option}") -> str:
    """One line per option, each ending with a newline."""
    return "".join(style.format(letter=letter, option=option) + "\n" for letter, option in zip(letters, options))


def video_mcq(question: str, options: Sequence[str], letters: str) -> str:
    """MVBench / MLVU / NExT-QA / Perception Test: ``Question: ...\\nOptions:\\n(A) ...\\n...``."""
    return f"Question: {question}\nOptions:\n{option_lines(options, letters)}{MCQ_DIRECT}"


def egoschema(question: str, options: Sequence[str], letters: str) -> str:
    return (
        "Select the best answer to the following multiple-choice question based on the video.\n"
        f"{question}\nOptions:\n{option_lines(options, letters)}{MCQ_DIRECT} The best answer is: "
    )


def videomme(question: str, options: Sequence[str], subtitles: str | None = None) -> str:
    """Video-MME; ``options`` are the dataset's own lines (``"A. ..."``); subtitles go first when given."""
    instruction = (
        "Select the best answer to the following multiple-choice question based on the video. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\n"
        f"{question}\n" + "".join(f"{option}\n" for option in options) + f"{MCQ_DIRECT} The best answer is:"
    )
    if subtitles is None:
        return instruction
    return f"This video's subtitles are listed below:\n{subtitles}\n" + instruction


def longvideobench(question: str, options: Sequence[str], letters: str) -> str:
    lines = ["Question: " + question]
    lines += [f"{letter}. {option}" for letter, option in zip(letters, options)]
    lines.append(MCQ_LETTER)
    return "\n".join(lines)


def tempcompass(question: str, task_format: str) -> str:
    if task_format == "multi-choice":
        return f"Question: {question}\nPlease answer with the option's letter from the given choices directly and only give the best option."
    if task_format == "yes_no":
        return f"Question: {question}\nPlease answer with 'yes' or 'no' directly."
    if task_format == "caption_matching":
        return f"Question: {question}\nPlease directly give the best option:"
    if task_format == "captioning":
        return (
            f"Question: {question.replace('Generated Caption:', '').strip()}\nPlease answer with the caption directly."
        )
    raise ValueError(f"unknown TempCompass format {task_format!r}")


def grounding(question: str) -> str:
    """Charades-STA: the question followed by the timestamp instruction (no separator, as official)."""
    return question + GROUNDING_SUFFIX


def activitynet_qa(question: str) -> str:
    return f"Question: {question}\nPlease watch the video and answer the question clearly and concisely.\n"


def short_answer(question: str, suffix: str = SHORT_ANSWER_USING) -> str:
    return f"{question}\n{suffix}"


def image_mcq(question: str, options: Sequence[str], letters: str) -> str:
    """AI2D: ``question\\nA. ...\\nB. ...\\nAnswer with the option's letter from the given choices directly.``"""
    return f"{question}\n{option_lines(options, letters, '{letter}. {option}')}{MCQ_LETTER}"


def mmmu(question: str, options: Sequence[str] | None, letters: str = "") -> str:
    """MMMU with the LLaVA config the official code loads (empty task instruction)."""
    if options:
        return f"{question}\n{option_lines(options, letters)}\n{MCQ_LETTER}"
    return f"{question}\n{SHORT_ANSWER_USING}"


MMVU_MC_DIRECT = """
Question: {question}
{option_string}

Do not generate any intermediate reasoning process. Answer directly with the option letter from the given choices.
"""
MMVU_OPEN_DIRECT = """
Question: {question}

Do not generate any intermediate reasoning process. Directly output the final short answer.
"""
MMVU_MC_COT = """
Question: {question}
{option_string}

Answer the given multiple-choice question step by step. Begin by explaining your reasoning process clearly. Conclude by stating the final answer using the following format: 'Therefore, the final answer is: $LETTER' (without quotes), where $LETTER is one of the options. Think step by
step before answering."""
MMVU_OPEN_COT = """
Question: {question}

Answer the given question step by step. Begin by explaining your reasoning process clearly. Conclude by stating the final answer using the following format: 'Therefore, the final answer is: 'Answer: $ANSWER' (without quotes), where $ANSWER is the final answer of the question. Think step by step
before answering."""
