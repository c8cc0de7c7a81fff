"""Wall time of ``tissuegraph culture bench --quick`` on the synthetic plate (the 5-minute goal of issue 12).

Runs the CLI in a child process (a fresh interpreter: imports of torch, timm and TensorFlow/StarDist are
counted), ``--repeats`` times, and records the wall time of each run, the child's CPU seconds, the load
average, and the run's own ``summary.md`` (scores, gaps) next to the timing.  Run it under the machine-wide
benchmark lock::

    flock /tmp/tg-bench.lock env PYTHONPATH=. .venv/bin/python benchmarks/bench_culture_quick.py \
        --out benchmarks/results/culture_bench_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _runinfo as R  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--segmenter", default="stardist", choices=["stardist", "watershed", "truth"])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/culture_bench_quick.json"))
    args = ap.parse_args(argv)
    m = R.machine()
    m["command"] = R.command("bench_culture_quick.py", argv)
    walls, cpus, summary = [], [], ""
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="tg_culture_quick_") as tmp:
            cmd = [sys.executable, "-m", "tissuegraph.cli", "culture", "bench", "--quick", "--dataset", "synthetic",
                   "--segmenter", args.segmenter, "-o", tmp, "--no-progress"]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", ".")})
            walls.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
            summary = (Path(tmp) / "summary.md").read_text()
            print(f"run {r + 1}: {walls[-1]:.1f} s wall, {cpus[-1]:.1f} s CPU", flush=True)
    m = R.finish(m)
    res = {"bench": "tissuegraph culture bench --quick --dataset synthetic", "cli": " ".join(cmd[1:-3]) + " -o OUT",
           "segmenter": args.segmenter, "wall_s": R.spread(walls), "cpu_s": R.spread(cpus), "goal_s": 300,
           "machine": m}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    md = [f"# `tissuegraph culture bench --quick` (synthetic plate, segmenter {args.segmenter})", "",
          f"- command: `{m['command']}` (under `flock /tmp/tg-bench.lock`, normal priority; other sessions' "
          "nice-19 work may have been running: the benchmark gets ~98 % of the CPU it asks for)",
          f"- wall: {R.fmt(res['wall_s'], 1)} s; child CPU: {R.fmt(res['cpu_s'], 1)} s; goal < 300 s on 2 cores",
          f"- {m['note']}", "", "## The run's summary.md (last repeat)", "", summary]
    args.out.with_suffix(".md").write_text("\n".join(md))
    print(f"-> {args.out} / .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
