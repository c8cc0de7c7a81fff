"""The study's claims, checked here: every representation on the diagnostic benchmark and on every real set.

Runs :func:`tissuegraph.bench.run_bench` (full version: all seeds, untrained twins and self-supervised
networks, every evaluation protocol) on

- ``synthetic``: the diagnostic benchmark (structure, morphology, density, stain; 96 samples each),
- ``synthetic_spots``: synthetic sections with spot expression known from the cell composition,
- ``kather2016``: tissue class of 150 px tiles, splits grouped by source image,
- ``crchisto``: patches labelled by their dominant annotated cell type, grouped by image,
- ``her2st``: HEST-Benchmark expression regression on the B4 section's spots,

each into ``<outdir>/<name>/`` (resumable: a rerun continues from the cached steps), then gathers
every ``summary.csv``/``gaps.csv`` into ``benchmarks/results/paper_comparison.md`` and ``.json``: one
table of representations x tasks (mean [95 % interval] of each task's primary metric), the baseline gaps
with verdicts, and the flags, with the exact command, versions and the load average.

Usage (from the repository root; real sets need ``TISSUEGRAPH_SHARED_DATA`` or ``../shared/data``)::

    PYTHONPATH=. .venv/bin/python benchmarks/paper_comparison.py --outdir /tmp/tg_paper
    PYTHONPATH=. .venv/bin/python benchmarks/paper_comparison.py --outdir /tmp/tg_paper --quick --datasets synthetic

Sets whose data are missing are reported as skipped (never silently dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import pandas as pd

import tissuegraph as tg
from tissuegraph.bench import _fmt, _primary, run_bench

ALL = ("synthetic", "synthetic_spots", "kather2016", "crchisto", "her2st")
RESULTS = Path(__file__).resolve().parent / "results"


def _md(df: pd.DataFrame, index: bool = True) -> str:
    """A DataFrame as a Markdown table (no tabulate dependency)."""
    d = df.reset_index() if index else df
    head = "| " + " | ".join(str(c) for c in d.columns) + " |"
    rows = ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |"
            for r in d.itertuples(index=False)]
    return "\n".join([head, "|" + "---|" * len(d.columns), *rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--outdir", type=Path, required=True, help="working folder (one sub-folder per data set)")
    ap.add_argument("--datasets", nargs="*", default=list(ALL), help=f"subset of {ALL}")
    ap.add_argument("--quick", action="store_true", help="the quick version of every set (a smoke test)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--segmenter", default="auto")
    ap.add_argument("--gnn-epochs", type=int, default=50, help="epochs of the self-supervised GNN (DGI)")
    ap.add_argument("--cnn-epochs", type=int, default=20,
                    help="epochs of the self-supervised ResNet-18 (SimCLR; ~1-2 min per epoch per 50 crops on a "
                         "busy 2-core CPU: use a GPU or fewer epochs)")
    ap.add_argument("--write", type=Path, default=RESULTS / "paper_comparison", help="result stem (.md/.json)")
    args = ap.parse_args(argv)
    tg.settings.progress = False
    command = "PYTHONPATH=. python benchmarks/paper_comparison.py " + " ".join(sys.argv[1:] if argv is None else argv)
    t0 = time.time()
    summaries, gaps, flags, status = [], [], [], {}
    for name in args.datasets:
        if name not in ALL:
            raise SystemExit(f"unknown data set {name!r}; choose from {ALL}")
        t1 = time.time()
        try:
            res = run_bench(name, args.outdir / name, quick=args.quick, seeds=tuple(args.seeds),
                            segmenter=args.segmenter, command=command,
                            train_epochs={"gnn": args.gnn_epochs, "cnn": args.cnn_epochs})
        except tg.InputError as exc:  # missing data: reported, not fatal
            status[name] = f"skipped: {exc}"
            continue
        except Exception as exc:  # noqa: BLE001 - one failing set must not lose the others
            status[name] = f"failed: {exc!r}"
            traceback.print_exc()
            continue
        status[name] = f"done in {time.time() - t1:.0f} s; skipped steps: {res.skipped or 'none'}"
        if not res.summary.empty:
            summaries.append(res.summary)
        if not res.gaps.empty:
            gaps.append(res.gaps)
        flags += [f"{name}: {f}" for f in res.flags]
    summary = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
    gap = pd.concat(gaps, ignore_index=True) if gaps else pd.DataFrame()

    lines = ["# The study's claims, checked on the diagnostic benchmark and the real sets", "",
             f"- command: `{command}`", f"- tissuegraph {tg.__version__}, Python {platform.python_version()}, "
             f"{os.cpu_count()} CPUs; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at the end; "
             f"total {time.time() - t0:.0f} s", ""]
    lines += ["## Data sets", ""] + [f"- {k}: {v}" for k, v in status.items()] + [""]
    if not summary.empty:
        tasks = list(dict.fromkeys(summary["task"]))
        cols, cell = [], {}
        for t in tasks:
            st = summary[summary["task"] == t]
            proto, metric = _primary(st)
            col = f"{t} ({proto}, {metric})"
            cols.append(col)
            for _, r in st[(st["protocol"] == proto) & (st["metric"] == metric)].iterrows():
                cell[(r["representation"], col)] = _fmt(float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]))
        reps = list(dict.fromkeys(summary["representation"]))
        lines += ["## Scores: mean [95 % interval]", "", "| representation | " + " | ".join(cols) + " |",
                  "|---|" + "---|" * len(cols)]
        lines += [f"| {r} | " + " | ".join(cell.get((r, c), "") for c in cols) + " |" for r in reps]
        lines.append("")
    if not gap.empty:
        counts = gap.groupby(["reference", "verdict"]).size().unstack(fill_value=0)
        lines += ["## Baseline gaps: verdict counts", "", _md(counts), "",
                  "## Baseline gaps", "", _md(gap, index=False), ""]
    lines += ["## Flags", ""] + ([f"- {f}" for f in flags] or ["- none"]) + [""]
    args.write.parent.mkdir(parents=True, exist_ok=True)
    args.write.with_suffix(".md").write_text("\n".join(lines))
    args.write.with_suffix(".json").write_text(json.dumps({
        "command": command, "status": status, "summary": summary.to_dict("records"),
        "gaps": gap.to_dict("records"), "flags": flags, "load_average": os.getloadavg(),
        "seconds": round(time.time() - t0, 1), "version": tg.__version__}, indent=1, default=str))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
