"""Supervision labels on the fixture tokenizer, against the official per-message rule."""

from __future__ import annotations

import pytest
import torch
from train_helpers import FIXTURE_MEDIA

from videollama3.training.annotations import SampleError
from videollama3.training.labels import IGNORE_INDEX, ChatTokens, fit_length, supervised_labels

MEDIA = FIXTURE_MEDIA


def kept_per_placeholder(out) -> list[int]:
    """Tokens each ``<image>`` placeholder (one per image / frame) keeps after pruning."""
    if "grid_sizes" not in out:
        return []
    counts, start = [], 0
    keep = out["compression_mask"]
    for (t, h, w), m in zip(out["grid_sizes"].tolist(), out["merge_sizes"].tolist()):
        per_frame = (h // m) * (w // m)
        counts += keep[start : start + t * per_frame].view(t, per_frame).sum(1).tolist()
        start += t * per_frame
    return counts


def reference_ids_and_labels(processor, conversation, add_system_prompt):
    """The official rule: render and tokenize every message alone; in assistant messages supervise
    ``ids[G:-1]`` with G = len(tokenize("<|im_start|>assistant\\n"))."""
    out = processor(conversation=conversation, add_system_prompt=add_system_prompt, return_tensors="pt", max_tokens=256)
    counts = iter(kept_per_placeholder(out))
    # Resolved messages (videos carry num_frames / timestamps), as the processor renders them.
    prompt = processor.apply_chat_template(conversation, add_system_prompt=add_system_prompt)
    tokenizer = processor.tokenizer
    header_len = len(tokenizer("<|im_start|>assistant\n")["input_ids"])
    chunks = prompt.split("<|im_start|>")[1:]  # one rendered message each
    assert "".join("<|im_start|>" + c for c in chunks) == prompt
    ids, labels = [], []
    for chunk in chunks:
        message_ids = []
        for token in tokenizer("<|im_start|>" + chunk)["input_ids"]:
            message_ids += [token] * (next(counts) if token == processor.image_token_id else 1)
        targets = [IGNORE_INDEX] * len(message_ids)
        if chunk.startswith("assistant\n"):
            targets[header_len:-1] = message_ids[header_len:-1]
        ids += message_ids
        labels += targets
    return out["input_ids"][0], torch.tensor(ids), torch.tensor(labels)


CONVERSATIONS = {
    "text_multiturn_system": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 plus 3?"},
        {"role": "assistant", "content": "5."},
        {"role": "user", "content": [{"type": "text", "text": "And 4 plus 4?"}]},
        {"role": "assistant", "content": "It is 8, of course."},
    ],
    "image_two_rounds": [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": {"image_path": str(MEDIA / "image_a.png")}},
                {"type": "text", "text": "What is shown?"},
            ],
        },
        {"role": "assistant", "content": "A picture."},
        {"role": "user", "content": "Colors?"},
        {"role": "assistant", "content": "\nRed and blue."},  # answer starting with a newline
    ],
    "multi_image": [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": {"image_path": str(MEDIA / "image_a.png")}},
                {"type": "image", "image": {"image_path": str(MEDIA / "image_b.png")}},
                {"type": "text", "text": "Same?"},
            ],
        },
        {"role": "assistant", "content": "No."},
    ],
    "video_pruned": [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": {"video_path": str(MEDIA / "video_static.mp4"), "fps": 1, "max_frames": 4}},
                {"type": "text", "text": "What happens?"},
            ],
        },
        {"role": "assistant", "content": "Nothing moves after a second."},
    ],
}


@pytest.mark.parametrize("add_system_prompt", [False, True])
@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_labels_match_the_per_message_reference(fixture_processor, name, add_system_prompt):
    processor = fixture_processor
    conversation = CONVERSATIONS[name]
    input_ids, ref_ids, ref_labels = reference_ids_and_labels(processor, conversation, add_system_prompt)
    assert torch.equal(input_ids, ref_ids)  # tokenizing the whole prompt = tokenizing message by message
    labels = supervised_labels(input_ids, ChatTokens.from_tokenizer(processor.tokenizer))
    assert torch.equal(labels, ref_labels)


def test_label_mask_supervises_answers_and_their_end_token_only(fixture_processor):
    processor = fixture_processor
    tokenizer = processor.tokenizer
    conversation = CONVERSATIONS["text_multiturn_system"]
    input_ids = processor(conversation=conversation, return_tensors="pt")["input_ids"][0]
    labels = supervised_labels(input_ids, ChatTokens.from_tokenizer(tokenizer))
    supervised = labels != IGNORE_INDEX
    # Exactly the two answers with their <|im_end|>: no header, no "\n" after <|im_end|>, no system/user text.
    runs, i = [], 0
    ids = input_ids.tolist()
    while i < len(ids):
        if supervised[i]:
            j = i
            while j < len(ids) and supervised[j]:
                j += 1
            runs.append(tokenizer.decode(ids[i:j]))
            i = j
        else:
            i += 1
    assert runs == ["5.<|im_end|>", "It is 8, of course.<|im_end|>"]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    after_end = [k + 1 for k, t in enumerate(ids[:-1]) if t == im_end]
    assert not supervised[after_end].any()


def test_visual_tokens_are_never_supervised(fixture_processor):
    out = fixture_processor(conversation=CONVERSATIONS["image_two_rounds"], return_tensors="pt", max_tokens=256)
    tokens = ChatTokens.from_tokenizer(fixture_processor.tokenizer)
    ids = out["input_ids"][0]
    labels = supervised_labels(ids, tokens)
    assert (ids == tokens.image).sum() > 0
    assert (labels[ids == tokens.image] == IGNORE_INDEX).all()


def test_fit_length_cuts_text_never_visual_tokens():
    image, im_end = 9, 3
    ids = torch.tensor([1, 9, 9, 9, 2, 5, 6, 7, im_end, 4])
    labels = torch.tensor([-100, -100, -100, -100, -100, 5, 6, 7, im_end, -100])
    assert not fit_length(ids, labels, 10, image).truncated
    cut = fit_length(ids, labels, 7, image)
    assert cut.truncated and cut.input_ids.tolist() == [1, 9, 9, 9, 2, 5, 6]
    with pytest.raises(SampleError) as err:  # the visual run would be cut
        fit_length(ids, labels, 3, image)
    assert err.value.kind == "too_long"
    with pytest.raises(SampleError) as err:  # nothing left to learn from
        fit_length(ids, labels, 5, image)
    assert err.value.kind == "no_answer"
