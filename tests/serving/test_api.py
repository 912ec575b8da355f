"""The OpenAI-compatible API, through the official ``openai`` client, against a really running server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import torch
from server_helpers import API_KEY, MEDIA, MODEL_NAME, data_url, image_message, video_message

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def reference_answer(loaded_model, conversation: list[dict], max_new_tokens: int) -> str:
    """What the library itself answers (processor + greedy ``generate``), for comparison with the server."""
    inputs = loaded_model.processor(
        conversation=conversation, add_system_prompt=True, add_generation_prompt=True, return_tensors="pt"
    )
    with torch.inference_mode():
        out = loaded_model.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    ids = [t for t in out[0].tolist() if t != 485]  # 485: the fixture's <|im_end|>
    return loaded_model.processor.batch_decode([ids], skip_special_tokens=True)[0]


def stats(server) -> dict:
    return requests.get(f"{server.url}/stats", headers=AUTH, timeout=10).json()


def test_models_health_and_schema(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL_NAME]
    assert client.models.retrieve(MODEL_NAME).id == MODEL_NAME
    health = requests.get(f"{server.url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    schema = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    assert {"/v1/chat/completions", "/v1/models", "/health", "/v1/uploads"} <= set(schema["paths"])


def test_image_answer_equals_library_generate(client, loaded_model, media_root):
    response = client.chat.completions.create(model=MODEL_NAME, messages=[image_message("image_a.png")], max_tokens=8)
    choice = response.choices[0]
    expected = reference_answer(
        loaded_model,
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": {"image_path": str(media_root / "image_a.png")}},
                    {"type": "text", "text": "What is in the image?"},
                ],
            }
        ],
        8,
    )
    assert choice.message.content == expected
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert 0 < usage.prompt_tokens_details.visual_tokens < usage.prompt_tokens
    assert response.object == "chat.completion" and response.model == MODEL_NAME


@pytest.mark.parametrize(
    "url",
    [
        "image_a.png",  # relative to the media root
        "alias.png",  # a symlink that stays inside the root
        "file://{root}/image_a.png",
        "data",  # data: URL
        "upload",  # POST /v1/uploads, then upload://<id>
    ],
)
def test_image_sources_agree(client, server, media_root, url):
    if url == "data":
        url = data_url(MEDIA / "image_a.png", "image/png")
    elif url == "upload":
        posted = requests.post(
            f"{server.url}/v1/uploads",
            data=(MEDIA / "image_a.png").read_bytes(),
            headers={**AUTH, "Content-Type": "image/png", "X-Filename": "a.png"},
            timeout=10,
        )
        assert posted.status_code == 200, posted.text
        url = posted.json()["url"]
        assert url.startswith("upload://")
    url = url.format(root=media_root)
    baseline = client.chat.completions.create(model=MODEL_NAME, messages=[image_message("image_a.png")], max_tokens=6)
    response = client.chat.completions.create(model=MODEL_NAME, messages=[image_message(url)], max_tokens=6)
    assert response.choices[0].message.content == baseline.choices[0].message.content
    assert response.usage.prompt_tokens == baseline.usage.prompt_tokens


def test_video_sampling_options_inside_or_beside_video_url(client):
    inside = client.chat.completions.create(
        model=MODEL_NAME, messages=[video_message("video_moving.mp4", fps=2, max_frames=4)], max_tokens=4
    )
    beside_message = {
        "role": "user",
        "content": [
            {"type": "video_url", "video_url": {"url": "video_moving.mp4"}, "fps": 2, "max_frames": 4},
            {"type": "text", "text": "What happens in the video?"},
        ],
    }
    beside = client.chat.completions.create(model=MODEL_NAME, messages=[beside_message], max_tokens=4)
    default = client.chat.completions.create(
        model=MODEL_NAME, messages=[video_message("video_moving.mp4")], max_tokens=4
    )
    assert inside.usage.prompt_tokens == beside.usage.prompt_tokens
    assert inside.choices[0].message.content == beside.choices[0].message.content
    assert inside.usage.prompt_tokens != default.usage.prompt_tokens  # 4 frames at 2 fps, not 6 at 1 fps


def test_video_answer_equals_library_generate(client, loaded_model, media_root):
    response = client.chat.completions.create(
        model=MODEL_NAME,
        messages=[video_message("video_long.mp4", start_time=2, end_time=9, fps=1)],
        max_tokens=6,
    )
    conversation = [
        {
            "role": "user",
            "content": [
                {
                    "type": "video",
                    "video": {
                        "video_path": str(media_root / "video_long.mp4"),
                        "fps": 1,
                        "max_frames": 32,  # the test server's --max-frames
                        "start_time": 2,
                        "end_time": 9,
                    },
                },
                {"type": "text", "text": "What happens in the video?"},
            ],
        }
    ]
    assert response.choices[0].message.content == reference_answer(loaded_model, conversation, 6)
    assert response.usage.prompt_tokens_details.visual_tokens > 0


def test_multi_turn_chat_encodes_the_video_once(client, server):
    upload = requests.post(
        f"{server.url}/v1/uploads",
        data=(MEDIA / "video_static.mp4").read_bytes(),
        headers={**AUTH, "Content-Type": "video/mp4"},
        timeout=10,
    ).json()
    # Sampling unique to this test, so that no other test has cached these features.
    messages = [video_message(upload["url"], "Describe the video.", fps=3, max_frames=7)]
    before = stats(server)["engine"]["encoder_calls"]
    first = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=5)
    after_first = stats(server)
    assert after_first["engine"]["encoder_calls"] == before + 1

    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And then?"},
    ]
    second = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=5)
    messages += [
        {"role": "assistant", "content": second.choices[0].message.content},
        {"role": "user", "content": "Ok."},
    ]
    third = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=5)
    after = stats(server)
    # Turns 2 and 3 resume from the cached KV of the turns before (which holds the video): neither the
    # encoder nor the video's features are needed again.
    assert after["engine"]["encoder_calls"] == before + 1
    assert after["prefix_cache"]["hits"] >= after_first["prefix_cache"]["hits"] + 2
    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    assert third.usage.prompt_tokens_details.visual_tokens == first.usage.prompt_tokens_details.visual_tokens


def test_streaming_matches_the_non_streamed_answer(client):
    messages = [image_message("image_c.png", "Read the chart.")]
    full = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12)
    chunks = list(
        client.chat.completions.create(
            model=MODEL_NAME, messages=messages, max_tokens=12, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens_details.visual_tokens == full.usage.prompt_tokens_details.visual_tokens


def test_server_sent_events_end_with_done(server):
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True}
    with requests.post(f"{server.url}/v1/chat/completions", json=body, headers=AUTH, stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines(decode_unicode=True) if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"


@pytest.mark.parametrize("stream", [False, True])
def test_stop_strings_cut_the_answer(client, stream):
    messages = [{"role": "user", "content": "Tell me a story."}]
    full = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=24).choices[0].message.content
    assert len(full) >= 6
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    expected = full[: full.find(stop)]
    kwargs = dict(model=MODEL_NAME, messages=messages, max_tokens=24, stop=[stop, "never-generated-ZZZ"])
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **kwargs))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reason = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason][0]
    else:
        choice = client.chat.completions.create(**kwargs).choices[0]
        text, reason = choice.message.content, choice.finish_reason
    assert text == expected
    assert reason == "stop"


def test_seeded_sampling_is_reproducible_and_n_gives_choices(client):
    kwargs = dict(
        model=MODEL_NAME,
        messages=[image_message("image_gray.png")],
        max_tokens=10,
        temperature=1.0,
        top_p=0.9,
        seed=1234,
    )
    a = client.chat.completions.create(**kwargs)
    b = client.chat.completions.create(**kwargs)
    assert a.choices[0].message.content == b.choices[0].message.content
    several = client.chat.completions.create(n=3, **kwargs)
    assert [c.index for c in several.choices] == [0, 1, 2]
    assert several.choices[0].message.content == a.choices[0].message.content  # choice i uses seed + i
    assert 3 <= several.usage.completion_tokens <= 3 * 10  # summed over the choices


def test_concurrent_requests_get_their_own_answers(client, server):
    """Many clients at once: every answer is the one the same request gets alone (no misrouted tokens)."""
    prompts = [
        [image_message("image_a.png", "First?")],
        [image_message("image_b.png", "Second?")],
        [video_message("video_moving.mp4", "Third?")],
        [{"role": "user", "content": "A text-only question."}],
        [image_message("image_rgba.png", "Fifth?")],
        [video_message("video_static.mp4", "Sixth?")],
    ]
    alone = [client.chat.completions.create(model=MODEL_NAME, messages=p, max_tokens=16) for p in prompts]
    steps_before = stats(server)["engine"]["decode_steps"]

    def ask(i):
        stream = i % 2 == 1
        kwargs = dict(model=MODEL_NAME, messages=prompts[i % len(prompts)], max_tokens=16)
        if stream:
            chunks = client.chat.completions.create(stream=True, **kwargs)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return client.chat.completions.create(**kwargs).choices[0].message.content

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(ask, range(24)))
    for i, answer in enumerate(answers):
        assert answer == alone[i % len(prompts)].choices[0].message.content, i
    after = stats(server)["engine"]
    assert after["max_running"] > 1  # sequences really shared forward passes
    assert after["decode_steps"] - steps_before < 24 * 16


def test_streamed_choices_are_told_apart_by_index(client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL_NAME,
            messages=[{"role": "user", "content": "Two answers, please."}],
            max_tokens=6,
            n=2,
            temperature=1.0,
            seed=5,
            stream=True,
        )
    )
    texts = {0: "", 1: ""}
    finished = set()
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert finished == {0, 1}
    alone = client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "Two answers, please."}],
        max_tokens=6,
        temperature=1.0,
        seed=6,  # choice 1 of the request above used seed 5 + 1
    )
    assert texts[1] == alone.choices[0].message.content
