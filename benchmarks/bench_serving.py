"""Load test of ``videollama3 serve``: N concurrent clients for D seconds, on loopback only.

Starts a server on a free loopback port (or uses ``--url``, which must be loopback), then runs
``--clients`` asynchronous clients (plain keep-alive HTTP connections) that each send chat completions back
to back for ``--duration`` seconds: a fixed mix of image, video and text-only questions over the
parity fixtures' media (named by path under ``--media-root``), each question worded differently,
greedy, ``--max-tokens`` each.
Reports failures, latency percentiles and throughput (requests and generated tokens per second).

    # continuous batching (the default) against one-at-a-time serving, same workload:
    python benchmarks/bench_serving.py --compare
    # one configuration:
    python benchmarks/bench_serving.py --max-batch-size 1 --clients 32 --duration 60 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "parity"

# The request mix (cycled; each client starts at a different offset).
WORKLOAD = [
    ("image", "image_a.png", "What is in the image?"),
    ("video", "video_moving.mp4", "What moves in the video?"),
    ("image", "image_c.png", "Describe the chart."),
    ("text", None, "Write a short poem about the sea."),
    ("image", "image_gray.png", "Is it dark?"),
    ("video", "video_static.mp4", "Does anything change?"),
    ("image", "image_rgba.png", "What colour is it?"),
    ("image", "image_b.png", "Describe the image in detail."),
]


def messages_for(kind: str, media: str | None, question: str) -> list[dict]:
    if kind == "text":
        return [{"role": "user", "content": question}]
    part = (
        {"type": "image_url", "image_url": {"url": media}}
        if kind == "image"
        else {"type": "video_url", "video_url": {"url": media, "fps": 1}}
    )
    return [{"role": "user", "content": [part, {"type": "text", "text": question}]}]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_loopback(url: str) -> None:
    host = urllib.parse.urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        sys.exit(f"bench_serving: refusing to load-test {host!r}: only loopback servers are allowed")


def wait_healthy(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy within {timeout} s")


def start_server(args, max_batch_size: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "videollama3",
        "serve",
        "--model",
        str(args.model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--media-root",
        str(args.media_root),
        "--max-batch-size",
        str(max_batch_size),
        "--max-concurrent-requests",
        str(max(128, 2 * args.clients)),
        "--log-level",
        "warning",
    ]
    if args.torch_threads:
        command += ["--torch-threads", str(args.torch_threads)]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
    except BaseException:
        server.kill()
        print(server.stderr.read() if server.stderr else "", file=sys.stderr)
        raise
    return server, url


class Connection:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams.

    The load generator shares the machine with the server, so it should cost as little CPU as possible:
    a full client library (the openai SDK builds pydantic models of every response) would take CPU the
    server then lacks, and measure the client as much as the server.
    """

    def __init__(self, host: str, port: int, api_key: str | None = None):
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, payload: dict) -> tuple[int, dict]:
        body = json.dumps(payload).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{self.auth}Connection: keep-alive\r\n\r\n"
        ).encode()
        for attempt in (0, 1):  # a keep-alive connection the server closed is reopened once
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.writer.write(head + body)
                await self.writer.drain()
                status_line = await self.reader.readuntil(b"\r\n")
                length = 0
                while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                data = await self.reader.readexactly(length)
                return int(status_line.split()[1]), json.loads(data)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def run_load(
    url: str, model: str, clients: int, duration: float, max_tokens: int, warmup: int, api_key: str | None = None
) -> dict:
    parsed = urllib.parse.urlparse(url)
    host, port = parsed.hostname, parsed.port or 80

    async def one(connection: Connection, messages) -> tuple[float, int]:
        started = time.perf_counter()
        status, body = await connection.post_json(
            "/v1/chat/completions",
            {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0},
        )
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body.get('error', body)}")
        return time.perf_counter() - started, body["usage"]["completion_tokens"]

    # Warm-up (not measured): every media item once, so both configurations start with warm caches.
    warm = Connection(host, port, api_key)
    for kind, media, question in WORKLOAD[: max(warmup, 0)]:
        await one(warm, messages_for(kind, media, question))
    await warm.close()

    latencies: list[float] = []
    tokens = 0
    failures: list[str] = []
    deadline = time.perf_counter() + duration

    async def worker(index: int) -> None:
        nonlocal tokens
        connection = Connection(host, port, api_key)
        k = index
        while time.perf_counter() < deadline:
            kind, media, question = WORKLOAD[k % len(WORKLOAD)]
            # Every question is different (as from different users): prompts share media, not their end.
            messages = messages_for(kind, media, f"{question} (client {index}, question {k})")
            try:
                latency, n = await one(connection, messages)
                latencies.append(latency)
                tokens += n
            except Exception as exc:  # every failure is counted and reported
                failures.append(f"{type(exc).__name__}: {exc}")
            k += 1
        await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "duration_s": round(elapsed, 2),
        "requests": len(latencies),
        "failed": len(failures),
        "failures": failures[:5],
        "throughput_rps": round(len(latencies) / elapsed, 2),
        "throughput_tokens_per_s": round(tokens / elapsed, 1),
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p90_s": round(percentile(latencies, 90), 3),
        "latency_p99_s": round(percentile(latencies, 99), 3),
        "latency_mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "completion_tokens_per_request": round(tokens / max(len(latencies), 1), 1),
    }


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def bench(args, max_batch_size: int) -> dict:
    if args.url:
        require_loopback(args.url)
        server, url = None, args.url.rstrip("/")
    else:
        server, url = start_server(args, max_batch_size)
    try:
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        with urllib.request.urlopen(urllib.request.Request(f"{url}/v1/models", headers=headers), timeout=10) as r:
            model = json.load(r)["data"][0]["id"]
        result = asyncio.run(
            run_load(url, model, args.clients, args.duration, args.max_tokens, len(WORKLOAD), args.api_key)
        )
        # The server's own counters (warm-up included): how wide it really batched, how many passes it ran.
        with urllib.request.urlopen(urllib.request.Request(f"{url}/stats", headers=headers), timeout=10) as r:
            engine = json.load(r)["engine"]
        result["server"] = {k: engine[k] for k in ("max_running", "decode_steps", "prefill_batches", "completed")}
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
    result["max_batch_size"] = max_batch_size if not args.url else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=FIXTURES / "model", help="checkpoint (default: the fixture)")
    parser.add_argument("--media-root", type=Path, default=FIXTURES / "media", help="folder of the workload media")
    parser.add_argument("--url", default=None, help="a running loopback server instead of starting one")
    parser.add_argument(
        "--api-key", default=os.environ.get("VIDEOLLAMA3_API_KEY"), help="for --url (default: $VIDEOLLAMA3_API_KEY)"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60, help="seconds of load (default 60)")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens generated per request (default 64)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="server's --max-batch-size (default 32)")
    parser.add_argument("--torch-threads", type=int, default=None, help="server's --torch-threads")
    parser.add_argument("--compare", action="store_true", help="also run with --max-batch-size 1 and compare")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.compare and args.url:
        parser.error("--compare starts its own servers; do not pass --url")

    results = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "runs": []}
    for batch in [args.max_batch_size, 1] if args.compare else [args.max_batch_size]:
        run = bench(args, batch)
        results["runs"].append(run)
        print(json.dumps(run), flush=True)
    if args.compare:
        batched, single = results["runs"]
        results["speedup"] = round(batched["throughput_rps"] / single["throughput_rps"], 2)
        print(f"throughput speedup (max batch {args.max_batch_size} vs 1): {results['speedup']}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    failed = sum(run["failed"] for run in results["runs"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
