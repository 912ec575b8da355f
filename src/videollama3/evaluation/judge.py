"""A minimal client for an OpenAI-compatible chat-completions endpoint, used as an LLM judge.

Only benchmarks whose official metric is judged by an LLM (ActivityNet-QA, MMVU) use it, and only when
the user gives ``--judge-endpoint``: no request ever leaves the machine otherwise. It uses the standard
library (no ``openai`` dependency). Judging is deterministic where the endpoint allows it
(temperature 0; the official scripts sample at 0.7, which makes their scores drift between runs).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from .base import EvaluationError


class JudgeError(EvaluationError):
    """The judge endpoint failed or answered something unreadable."""


@dataclass
class Judge:
    """``POST {endpoint}/chat/completions`` with ``model`` and the messages; returns the reply text.

    Args:
        endpoint: base URL (``http://host:8000/v1``) or the full ``.../chat/completions`` URL.
        model: the model name the endpoint serves.
        api_key: sent as a bearer token when given.
        timeout: seconds per request.
        retries: attempts per call before giving up (with exponential back-off).
    """

    endpoint: str
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    timeout: float = 60.0
    retries: int = 3
    temperature: float = 0.0
    max_tokens: int = 256

    @property
    def url(self) -> str:
        url = self.endpoint.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"

    def chat(self, messages: list[dict[str, Any]]) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "messages": messages,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error: Exception | None = None
        for attempt in range(max(1, self.retries)):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                return payload["choices"][0]["message"]["content"] or ""
            except (urllib.error.URLError, TimeoutError, OSError, KeyError, IndexError, ValueError) as exc:
                last_error = exc
                if attempt + 1 < self.retries:
                    time.sleep(min(2.0**attempt, 10.0))
        raise JudgeError(f"judge {self.url} failed after {self.retries} attempts: {last_error}")


def judge_from_args(endpoint: str | None, model: str, api_key_env: str | None) -> Judge | None:
    """A Judge for the CLI options (the API key is read from the named environment variable)."""
    if not endpoint:
        return None
    api_key = os.environ.get(api_key_env) if api_key_env else None
    return Judge(endpoint=endpoint, model=model, api_key=api_key)
