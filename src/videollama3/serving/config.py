"""Server settings: one dataclass shared by the command line, the app factory and the tests."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

API_KEY_ENV = "VIDEOLLAMA3_API_KEY"


@dataclass
class ServerConfig:
    """Everything ``videollama3 serve`` can be told. Defaults suit one GPU and trusted local clients."""

    model: str
    served_model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    # model
    device: str = "auto"
    dtype: str = "auto"
    torch_threads: int | None = None  # intra-op threads; None = on a CPU, the cores the preprocessing pool leaves
    # batching
    max_batch_size: int = 32
    max_prefill_tokens: int = 16384
    max_concurrent_requests: int = 128
    max_live_sessions: int = 2  # concurrent /v1/live WebSocket sessions (each holds its own KV cache)
    preprocess_workers: int = 2
    # limits
    max_body_bytes: int = 96 << 20
    max_media_bytes: int = 64 << 20
    max_video_seconds: float = 3600.0
    max_frames: int = 180
    max_visual_tokens: int | None = None  # the processor's budget per request; None = the checkpoint's
    max_prompt_tokens: int | None = None  # None = the model's context length
    max_new_tokens: int = 2048
    request_timeout: float = 600.0
    # media
    media_root: str | None = None
    allow_remote_media: bool = False
    upload_dir: str | None = None  # None = a temporary folder removed at exit
    max_upload_dir_bytes: int = 2 << 30
    feature_cache_bytes: int = 1 << 30
    prefix_cache_bytes: int = 1 << 30
    # web page
    enable_web_page: bool = True

    @property
    def model_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        path = Path(self.model)
        return path.name if path.exists() else self.model

    def resolved_api_key(self) -> str | None:
        return self.api_key or os.environ.get(API_KEY_ENV) or None

    def validate(self) -> None:
        """Refuse settings that are unsafe or cannot work, with a message saying what to change."""
        if not is_loopback(self.host) and not self.resolved_api_key():
            raise ConfigError(
                f"refusing to listen on {self.host!r} without an API key: anyone who can reach it could use the "
                f"model. Pass --api-key KEY (or set {API_KEY_ENV}), or listen on 127.0.0.1."
            )
        for name in (
            "max_batch_size",
            "max_prefill_tokens",
            "max_concurrent_requests",
            "max_live_sessions",
            "preprocess_workers",
            "max_body_bytes",
            "max_media_bytes",
            "max_frames",
            "max_new_tokens",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"torch-threads must be >= 1, got {self.torch_threads}")
        if self.request_timeout <= 0 or self.max_video_seconds <= 0:
            raise ConfigError("request-timeout and max-video-seconds must be > 0")
        if self.media_root is not None and not Path(self.media_root).is_dir():
            raise ConfigError(f"--media-root {self.media_root!r} is not a folder")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
