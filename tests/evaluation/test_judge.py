"""Judged benchmarks (ActivityNet-QA, MMVU) against a fake local OpenAI-compatible judge."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from eval_helpers import Case, make_mp4, run_eval, scores, write_json

from videollama3.evaluation.judge import Judge, JudgeError


class FakeJudge:
    """A chat-completions server whose reply is computed from the last user message."""

    def __init__(self, reply):
        self.reply = reply
        self.requests: list[dict] = []
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                judge.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                content = judge.reply(body["messages"][-1]["content"])
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _activitynet(root):
    data = root / "ActivityNet-QA"
    write_json(
        data / "test_q.json",
        [
            {"video_name": "abc", "question_id": "v_abc_0", "question": "what animal is shown"},
            {"video_name": "abc", "question_id": "v_abc_1", "question": "is it raining"},
        ],
    )
    write_json(
        data / "test_a.json",
        [
            {"question_id": "v_abc_0", "answer": "cat", "type": 5},
            {"question_id": "v_abc_1", "answer": "no", "type": 3},
        ],
    )
    make_mp4(data / "all_test" / "v_abc.mp4")
    return data


def test_activitynet_qa_with_a_judge(tmp_path, monkeypatch):
    def reply(message):
        return "{'pred': 'yes', 'score': 4}" if "Predicted Answer: a cat" in message else "{'pred': 'no', 'score': 1}"

    monkeypatch.setenv("JUDGE_KEY", "secret")
    case = Case("activitynet_qa", _activitynet(tmp_path / "data"), {"v_abc_0": "a cat", "v_abc_1": "yes"}, {})
    with FakeJudge(reply) as judge:
        code = run_eval(
            case,
            tmp_path / "out",
            "--judge-endpoint",
            judge.url,
            "--judge-model",
            "judge-1",
            "--judge-api-key-env",
            "JUDGE_KEY",
        )
    assert code == 0
    metrics = scores(tmp_path / "out", "activitynet_qa")["metrics"]
    assert metrics["accuracy"] == 50.0 and metrics["score"] == 2.5
    assert metrics["by_type"] == {"Object": 100.0, "Yes/No": 0.0}
    request = judge.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["model"] == "judge-1"
    assert request["auth"] == "Bearer secret" and request["temperature"] == 0.0
    assert (
        "Question: what animal is shown\nCorrect Answer: cat\nPredicted Answer: a cat"
        in request["messages"][1]["content"]
    )


def test_unreadable_judge_replies_are_counted(tmp_path):
    case = Case("activitynet_qa", _activitynet(tmp_path / "data"), {"v_abc_0": "a cat", "v_abc_1": "yes"}, {})
    with FakeJudge(lambda message: "I refuse") as judge:
        assert run_eval(case, tmp_path / "out", "--judge-endpoint", judge.url) == 0
    metrics = scores(tmp_path / "out", "activitynet_qa")["metrics"]
    assert metrics["judge_failures"] == 2 and metrics["accuracy"] == 0.0 and metrics["unparseable"] == 2


def test_mmvu_with_a_judge(tmp_path):
    data = tmp_path / "MMVU"
    write_json(
        data / "validation.json",
        [
            {
                "id": "m1",
                "video": "https://huggingface.co/datasets/yale-nlp/MMVU/resolve/main/videos/Art/0.mp4",
                "question": "Which technique?",
                "choices": {"A": "fresco", "B": "tempera"},
                "answer": "A",
                "question_type": "multiple-choice",
                "metadata": {"subject": "Art"},
            },
            {
                "id": "m2",
                "video": "https://huggingface.co/datasets/yale-nlp/MMVU/resolve/main/videos/Chemistry/1.mp4",
                "question": "What gas forms?",
                "choices": {},
                "answer": "hydrogen",
                "question_type": "open-ended",
                "metadata": {"subject": "Chemistry"},
            },
        ],
    )
    make_mp4(data / "videos" / "Art" / "0.mp4")
    make_mp4(data / "videos" / "Chemistry" / "1.mp4")

    def reply(message):
        correct = "Model Response to the Question: A" in message
        return json.dumps({"extracted_answer": "A" if correct else "oxygen", "correct": correct})

    case = Case("mmvu", data, {"m1": "A", "m2": "oxygen"}, {})
    with FakeJudge(reply) as judge:
        assert run_eval(case, tmp_path / "out", "--judge-endpoint", judge.url) == 0
    metrics = scores(tmp_path / "out", "mmvu")["metrics"]
    assert metrics["accuracy"] == 50.0
    assert metrics["by_question_type"] == {"multiple-choice": 100.0, "open-ended": 0.0}
    prompt = json.loads((tmp_path / "mmvu_script.seen.jsonl").read_text().splitlines()[0])["texts"][0]
    assert prompt == (
        "\nQuestion: Which technique?\nA: fresco\nB: tempera\n\nDo not generate any intermediate reasoning "
        "process. Answer directly with the option letter from the given choices.\n"
    )


def test_judge_retries_then_fails_clearly():
    judge = Judge("http://127.0.0.1:9/v1", retries=1, timeout=2)
    with pytest.raises(JudgeError, match="failed after 1 attempts"):
        judge.chat([{"role": "user", "content": "hi"}])
