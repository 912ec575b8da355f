"""``videollama3 chat``: ask a question about images and / or a video, answered as it is generated.

Examples::

    videollama3 chat --model DAMO-NLP-SG/VideoLLaMA3-7B --video clip.mp4 "What is the cat doing?"
    videollama3 chat --model ./VideoLLaMA3-2B --image a.jpg --image b.jpg "What differs?"
    videollama3 chat --model ./VideoLLaMA3-2B --video lecture.mp4 --fps 0.5    # interactive, multi-turn

Without a question the session is interactive: one line per turn, ``exit`` (or end of input) quits. The
images and the video belong to the first turn; later turns see them through the conversation history.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MediaNotFoundError
from .options import model_or_bundled

EXIT_WORDS = {"exit", "quit", ":q"}
DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", nargs="?", help="the question; omit it for an interactive session")
    parser.add_argument(
        "--model",
        help="checkpoint folder or Hugging Face Hub id (e.g. DAMO-NLP-SG/VideoLLaMA3-7B); "
        "default: the small synthetic-world model bundled with the package",
    )
    parser.add_argument("--video", type=Path, help="a video file, a GIF or a folder of frames")
    parser.add_argument("--image", type=Path, action="append", default=[], help="an image (repeatable)")
    parser.add_argument("--fps", type=float, help="video frames sampled per second (default: the checkpoint's, 1)")
    parser.add_argument("--max-frames", type=int, help="most video frames kept (default: the checkpoint's, 180)")
    parser.add_argument("--start-time", type=float, help="video start, in seconds")
    parser.add_argument("--end-time", type=float, help="video end, in seconds")
    parser.add_argument("--max-tokens", type=int, help="visual-token budget of the conversation (default 16384)")
    parser.add_argument("--system", help="system prompt (default: VideoLLaMA3's)")
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="longest answer, in tokens (default 1024)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 = greedy (default)")
    parser.add_argument(
        "--top-p", type=float, default=0.9, help="nucleus sampling when --temperature > 0 (default 0.9)"
    )
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="weights dtype (auto: bfloat16 on GPU, float32 on CPU)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while videos decode")


def run(args: argparse.Namespace) -> int:
    args.model = model_or_bundled(args.model, example="DAMO-NLP-SG/VideoLLaMA3-7B")
    for path in [*args.image, *([args.video] if args.video else [])]:
        if not path.exists():
            raise MediaNotFoundError(f"not found: {path}")
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0, got {args.temperature}")

    import torch

    from ..model.modeling import VideoLLaMA3ForCausalLM
    from ..processing import TqdmProgress, VideoLLaMA3Processor

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = _resolve_dtype(args.dtype, device)
    progress = None if args.no_progress else TqdmProgress("decoding video")
    processor = VideoLLaMA3Processor.from_pretrained(args.model, progress=progress)
    model = VideoLLaMA3ForCausalLM.from_pretrained(args.model, dtype=dtype).to(device).eval()

    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    media = _media_items(args)

    if args.question is not None:
        messages.append({"role": "user", "content": [*media, {"type": "text", "text": args.question}]})
        _answer(model, processor, messages, args, device, dtype)
        return 0

    interactive = sys.stdin.isatty()
    if interactive:
        print("Interactive chat: one question per line; 'exit' or Ctrl-D to quit.", file=sys.stderr)
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:  # end of input
            break
        question = line.strip()
        if not question:
            continue
        if question.lower() in EXIT_WORDS:
            break
        content = [*media, {"type": "text", "text": question}] if media else question
        media = []  # the media go with the first turn only
        messages.append({"role": "user", "content": content})
        answer = _answer(model, processor, messages, args, device, dtype)
        messages.append({"role": "assistant", "content": answer})
    return 0


def _media_items(args: argparse.Namespace) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [{"type": "image", "image": {"image_path": str(path)}} for path in args.image]
    if args.video:
        video: dict[str, Any] = {"video_path": str(args.video)}
        for key in ("fps", "max_frames", "start_time", "end_time"):
            if getattr(args, key) is not None:
                video[key] = getattr(args, key)
        items.append({"type": "video", "video": video})
    return items


def _resolve_dtype(name: str, device) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def _answer(model, processor, messages, args, device, dtype) -> str:
    """Generate the assistant's reply to ``messages``, printing it as it streams in. Returns the text."""
    from transformers import TextIteratorStreamer

    inputs = processor(messages, add_system_prompt=True, add_generation_prompt=True, max_tokens=args.max_tokens)
    inputs = inputs.to(device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    generation: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "streamer": streamer}
    if args.temperature > 0:
        generation.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    else:
        generation.update(do_sample=False, temperature=None, top_p=None, top_k=None)

    failure: list[BaseException] = []

    def generate() -> None:
        try:
            import torch

            with torch.inference_mode():
                model.generate(**inputs, **generation)
        except BaseException as exc:  # re-raised below, in the main thread
            failure.append(exc)
            streamer.end()

    thread = threading.Thread(target=generate, name="videollama3-generate", daemon=True)
    thread.start()
    pieces = []
    for piece in streamer:
        pieces.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    thread.join()
    sys.stdout.write("\n")
    sys.stdout.flush()
    if failure:
        raise failure[0]
    return "".join(pieces)
