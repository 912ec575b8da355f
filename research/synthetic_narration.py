"""Live narration on held-out synthetic streams (docs/synthetic.md, "Live narration").

For each model: the share of events it announces within one second of stream time, and its false
announcements per minute (``videollama3.synthetic.narration.evaluate_narration``: an autonomous live session
over held-out benchmark videos at 1 fps, fp32, greedy), at one or more ``--speak-margin`` values.

    python research/synthetic_narration.py --model src/videollama3/assets/synthetic-narrator --n 50 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from videollama3.synthetic.narration import evaluate_narration

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="checkpoint or trained-part folder (repeat)")
    parser.add_argument("--n", type=int, default=50, help="held-out videos (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="held-out benchmark seed (default 0)")
    parser.add_argument("--speak-margin", type=float, action="append", help="speak-margin values (default 0)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    results = []
    for model in args.model:
        for margin in args.speak_margin or [0.0]:
            start = time.perf_counter()
            metrics = evaluate_narration(model, n=args.n, seed=args.seed, speak_margin=margin, progress=True)
            metrics |= {"model": model, "seconds": round(time.perf_counter() - start, 1)}
            results.append(metrics)
            print(json.dumps(metrics), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
