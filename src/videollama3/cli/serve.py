"""``videollama3 serve --model DIR``: the OpenAI-compatible HTTP server with its web page.

The server listens at once and loads the model in the background (``/health`` says "loading", model
routes answer 503 until it is ready). Without an API key it only listens on a loopback address.
"""

from __future__ import annotations

import argparse

_MiB = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder or hub name (either layout)")
    parser.add_argument("--served-model-name", default=None, help="the name clients use (default: folder name)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' (default: $VIDEOLLAMA3_API_KEY; required off loopback)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--device", default="auto", help="cpu, cuda, cuda:1... (default: cuda when available)")
    model.add_argument(
        "--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"), help="(auto: bf16 on GPU)"
    )
    model.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="CPU threads per torch op (default on a CPU: the cores --preprocess-workers leave, at least 1)",
    )
    batching = parser.add_argument_group("batching")
    batching.add_argument("--max-batch-size", type=int, default=32, help="sequences decoded together (default 32)")
    batching.add_argument(
        "--max-prefill-tokens", type=int, default=16384, help="prompt tokens admitted per step (default 16384)"
    )
    batching.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=128,
        help="requests in flight (preparing, queued, generating) before answering 429 (default 128)",
    )
    batching.add_argument(
        "--max-live-sessions", type=int, default=2, help="live video sessions (/v1/live) at once (default 2)"
    )
    batching.add_argument(
        "--preprocess-workers", type=int, default=2, help="threads decoding media and tokenising (default 2)"
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-body-mb", type=float, default=96, help="largest request body (default 96 MiB)")
    limits.add_argument("--max-media-mb", type=float, default=64, help="largest image / video / upload (default 64)")
    limits.add_argument(
        "--max-video-seconds", type=float, default=3600, help="longest video span decoded (default 3600)"
    )
    limits.add_argument("--max-frames", type=int, default=180, help="most frames per video (default 180)")
    limits.add_argument(
        "--max-visual-tokens", type=int, default=None, help="visual-token budget per request (default: checkpoint's)"
    )
    limits.add_argument(
        "--max-prompt-tokens", type=int, default=None, help="longest prompt, visual tokens included (default: context)"
    )
    limits.add_argument("--max-new-tokens", type=int, default=2048, help="largest max_tokens (default 2048)")
    limits.add_argument("--request-timeout", type=float, default=600, help="seconds per request (default 600)")
    media = parser.add_argument_group("media")
    media.add_argument("--media-root", default=None, help="folder whose files requests may name by path")
    media.add_argument(
        "--allow-remote-media", action="store_true", help="let requests name http(s) URLs the server downloads"
    )
    media.add_argument("--upload-dir", default=None, help="where uploads are kept (default: a temporary folder)")
    media.add_argument("--feature-cache-mb", type=float, default=1024, help="visual feature cache (default 1024 MiB)")
    media.add_argument(
        "--prefix-cache-mb", type=float, default=1024, help="KV cache of prompt prefixes (default 1024 MiB; 0: off)"
    )
    parser.add_argument("--no-web-page", action="store_true", help="do not serve the chat page at /")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def config_from_args(args: argparse.Namespace):
    from ..serving.config import ServerConfig

    return ServerConfig(
        model=args.model,
        served_model_name=args.served_model_name,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        device=args.device,
        dtype=args.dtype,
        torch_threads=args.torch_threads,
        max_batch_size=args.max_batch_size,
        max_prefill_tokens=args.max_prefill_tokens,
        max_concurrent_requests=args.max_concurrent_requests,
        max_live_sessions=args.max_live_sessions,
        preprocess_workers=args.preprocess_workers,
        max_body_bytes=int(args.max_body_mb * _MiB),
        max_media_bytes=int(args.max_media_mb * _MiB),
        max_video_seconds=args.max_video_seconds,
        max_frames=args.max_frames,
        max_visual_tokens=args.max_visual_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
        max_new_tokens=args.max_new_tokens,
        request_timeout=args.request_timeout,
        media_root=args.media_root,
        allow_remote_media=args.allow_remote_media,
        upload_dir=args.upload_dir,
        feature_cache_bytes=int(args.feature_cache_mb * _MiB),
        prefix_cache_bytes=int(args.prefix_cache_mb * _MiB),
        enable_web_page=not args.no_web_page,
    )


def run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from ..serving.app import create_app

    config = config_from_args(args)
    app = create_app(config, on_load_error=lambda exc: _stop(server))  # validates: refuses unsafe settings
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=args.log_level,
            timeout_graceful_shutdown=5,
        )
    )
    print(f"videollama3 serve: http://{config.host}:{config.port}/ (model {config.model_name!r} loading)", flush=True)
    server.run()
    error = app.state.server.load_error
    if error is not None:
        from ..errors import CheckpointError

        raise CheckpointError(f"could not load {config.model}: {error}")
    return 0


def _stop(server) -> None:
    server.should_exit = True
