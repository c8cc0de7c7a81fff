"""The study's claims, checked here: every representation on the diagnostic benchmark and on every real set.

Runs :func:`tissuegraph.bench.run_bench` (the full version: untrained twins of every seed, the
self-supervised GNN (DGI) and CNN (SimCLR), every evaluation protocol, grouped splits x seeds) on

- ``synthetic``: the diagnostic benchmark (structure, morphology, density, stain; ``--n-synthetic`` per factor),
- ``synthetic_spots``: synthetic sections with spot expression known from the cell composition,
- ``kather2016``: tissue class of 150 px tiles, splits grouped by source image,
- ``crchisto``: patches labelled by their dominant annotated cell type, grouped by image,
- ``her2st``: HEST-Benchmark expression regression on the B4 section's spots,

each into ``<outdir>/<name>/`` with its ``summary.md`` etc. After a set finishes, ``<outdir>/<name>/paper.json``
records its configuration, time, flags and skipped steps; a later call with the same configuration reuses
it (``--rerun`` forces a new run; an interrupted set resumes from its ``cache/``). Finally every set in
``--datasets`` that has finished is gathered into ``--write``.md/.csv (and .json):

- one table of representations x tasks (mean [95 % interval] of each task's primary metric),
- the study's claims, checked per task: learned vs the structural baseline and vs their untrained twins
  (verdict counts on the primary metric), metric disagreement (do the benchmark metrics hide it?),
  shortcut / confound flags,
- the configuration of this run (what "full" means here), the command, versions and load averages.

The defaults are the full version that the README table comes from: 3 seeds (an untrained twin of every
network per seed; 5 grouped splits x 3 seeds of evaluation), DGI 50 epochs, SimCLR 5 epochs on at most
256 crops (every sample embedded), classification scored with retrieval mAP and Leiden clustering beside
it; 48 diagnostic samples per factor (160 µm), 6 synthetic spot sections of 800 µm, 50 Kather tiles per
class, the first 30 CRCHisto images of each split (40 images), HER2ST B4 whole. On the 2-core machine
shared with other sessions (load average 4-16), one process per set side by side at nice 19 with one
BLAS/torch thread each, the sets took 43 (diagnostic), 29 (Kather), 27 (HER2ST), 22 (CRCHisto) and 15
(synthetic spots) minutes, about 45 minutes in all; SimCLR is the largest step of every set (the per-step
times are in the result's "Where the time goes" table). Use one thread per process: two BLAS threads per
process on the busy 2-core machine made one scikit-learn logistic regression ~40x slower (spinning
threads), and the probes and linear probes are most of the evaluation.

Usage (from the repository root; real sets need ``TISSUEGRAPH_SHARED_DATA`` or ``../shared/data``)::

    export PYTHONPATH=. OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
    for s in her2st synthetic synthetic_spots kather2016 crchisto; do   # one process per set
      nice -n 19 .venv/bin/python benchmarks/paper_comparison.py --outdir /tmp/tg_paper_full --datasets $s \
        --write /tmp/tg_paper_full/part_$s &
    done; wait
    .venv/bin/python benchmarks/paper_comparison.py --outdir /tmp/tg_paper_full --gather-only
    # or all sets one after the other in one process (the same configuration, several times longer):
    nice -n 19 .venv/bin/python benchmarks/paper_comparison.py --outdir /tmp/tg_paper_full
    # a smoke test (one seed, untrained networks only, small sets):
    .venv/bin/python benchmarks/paper_comparison.py --outdir /tmp/tg_quick --quick \
        --write benchmarks/results/paper_comparison_quick

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
from tissuegraph.bench import _fmt, _primary, load_dataset, run_bench

ALL = ("synthetic", "synthetic_spots", "kather2016", "crchisto", "her2st")
RESULTS = Path(__file__).resolve().parent / "results"


def _md(df: pd.DataFrame, index: bool = True) -> str:
    """A DataFrame as a Markdown table (no tabulate dependency)."""
    d = df.reset_index() if index else df
    head = "| " + " | ".join(str(c) for c in d.columns) + " |"
    rows = ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |"
            for r in d.itertuples(index=False)]
    return "\n".join([head, "|" + "---|" * len(d.columns), *rows])


def dataset_config(name: str, args) -> dict:
    """The size of each set in this run (recorded in the results: what 'full' means here)."""
    if args.quick:
        return {"quick": True}
    if name == "synthetic":
        return {"factor": "all", "n_samples_per_factor": args.n_synthetic, "size_um": args.synthetic_size_um,
                "n_patients": 6}
    if name == "synthetic_spots":
        return {"n_sections": args.spot_sections, "section_size_um": args.spot_section_um}
    if name == "kather2016":
        return {"limit_per_class": args.kather_per_class}
    if name == "crchisto":
        return {"limit_images": args.crchisto_images}
    return {"section": "B4"}


def make_dataset(name: str, cfg: dict, seed: int):
    """The BenchDataset of one set at the configured size (``tg.bench.load_dataset`` for --quick)."""
    from tissuegraph import datasets as D

    if cfg.get("quick"):
        return load_dataset(name, quick=True, seed=seed)
    if name == "synthetic":
        return D.diagnostic_benchmark(factor="all", n_samples=cfg["n_samples_per_factor"], size_um=cfg["size_um"],
                                      n_patients=cfg["n_patients"], seed=seed)
    if name == "synthetic_spots":
        return D.diagnostic_benchmark(spots=True, n_sections=cfg["n_sections"],
                                      section_size_um=cfg["section_size_um"], seed=seed)
    if name == "kather2016":
        return D.load_kather2016(limit_per_class=cfg["limit_per_class"], seed=seed)
    if name == "crchisto":
        return D.load_crchisto_patches(limit_images=cfg["limit_images"])
    return D.load_her2st()


_META_FIELDS = ("family", "trained", "learned", "objective", "architecture", "inputs", "layer", "seed", "twin_group")


def _jsonable(v):
    """Plain Python values (numpy scalars and arrays from AnnData uns) for paper.json."""
    import numpy as np

    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


class _NotRun(Exception):
    """The set's data are missing (its status says so)."""


def run_one(name: str, args, command: str) -> dict:
    """Run (or reuse) one set; returns its record (also written to ``<outdir>/<name>/paper.json``)."""
    out = args.outdir / name
    cfg = {"dataset": dataset_config(name, args), "skipped_steps": sorted(args.skip_steps), "classification_also": [] if args.quick else
           list(args.classification_also), "seeds": list(args.seeds), "segmenter": args.segmenter,
           "train_epochs": {"gnn": args.gnn_epochs, "cnn": args.cnn_epochs}, "quick": bool(args.quick),
           "simclr_max_crops": None if args.quick else args.simclr_max_crops}
    rec_path = out / "paper.json"
    if rec_path.is_file() and not args.rerun:
        rec = json.loads(rec_path.read_text())
        if rec.get("config") == cfg and rec["status"].startswith("done"):
            print(f"[paper] {name}: reusing the finished run in {out}", flush=True)
            return rec
    t1 = time.time()
    load0 = os.getloadavg()
    rec = {"name": name, "config": cfg, "command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                                      time.gmtime())}
    print(f"[paper] {name}: starting ({cfg})", flush=True)
    try:
        ds = make_dataset(name, cfg["dataset"], args.seeds[0])
    except tg.InputError as exc:  # missing data: reported, not fatal
        ds, rec["status"] = None, f"skipped: {exc}"
    try:
        if ds is None:
            raise _NotRun
        if not args.quick and args.classification_also:  # needed to check the metric disagreement
            for t in ds.tasks:
                if t["task"] == "classification":
                    t["task"] = ["classification", *args.classification_also]
        from tissuegraph.bench import REPRESENTATIONS

        steps = None if not args.skip_steps else [s.name for s in REPRESENTATIONS if s.name not in args.skip_steps]
        res = run_bench(ds, out, quick=args.quick, seeds=tuple(args.seeds), segmenter=args.segmenter,
                        command=command, train_epochs=cfg["train_epochs"], representations=steps,
                        cnn_max_crops=cfg["simclr_max_crops"])
    except _NotRun:
        pass
    except Exception as exc:  # noqa: BLE001 - one failing set must not lose the others
        traceback.print_exc()
        rec["status"] = f"failed: {exc!r}"
    if "status" in rec:
        out.mkdir(parents=True, exist_ok=True)
        rec_path.write_text(json.dumps(rec, indent=1, default=str))
        print(f"[paper] {name}: {rec['status']}", flush=True)
        return rec
    man = json.loads((out / "manifest.json").read_text())
    meta = {k: _jsonable({f: (v or {}).get(f) for f in _META_FIELDS})
            for k, v in (res.samples.uns.get("representations") or {}).items()}
    rec.update(status="done", seconds=round(time.time() - t1, 1), skipped=res.skipped, flags=list(res.flags),
               timings=man.get("timings", {}), evaluate_timings=man.get("evaluate_timings", {}),
               representations_meta=meta,
               n_samples=int(res.samples.n_obs), representations=[k for k in res.samples.obsm if k.startswith("X_")],
               n_nuclei=int(res.cells.n_obs), load_before=load0, load_after=os.getloadavg(),
               finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    rec_path.write_text(json.dumps(rec, indent=1, default=str))
    print(f"[paper] {name}: done in {rec['seconds']:.0f} s", flush=True)
    return rec


# ------------------------------------------------------------------------------------------- gathering
def _primary_rows(summary: pd.DataFrame) -> pd.DataFrame:
    keep = []
    for t in dict.fromkeys(summary["task"]):
        st = summary[summary["task"] == t]
        proto, metric = _primary(st)
        keep.append(st[(st["protocol"] == proto) & (st["metric"] == metric)])
    return pd.concat(keep, ignore_index=True) if keep else summary.iloc[:0]


def _primary_gaps(gaps: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    keep = []
    for t in dict.fromkeys(gaps["task"]):
        proto, metric = _primary(summary[summary["task"] == t])
        keep.append(gaps[(gaps["task"] == t) & (gaps["protocol"] == proto) & (gaps["metric"] == metric)])
    return pd.concat(keep, ignore_index=True) if keep else gaps.iloc[:0]


def claims(summary: pd.DataFrame, gaps: pd.DataFrame, flags: list[str], reps_meta: dict) -> list[str]:
    """The study's claims checked per task, from the tables (no number is typed in by hand)."""
    lines = []
    g = _primary_gaps(gaps, summary) if not gaps.empty else gaps
    prim = _primary_rows(summary)
    for task in dict.fromkeys(prim["task"]):
        st = prim[prim["task"] == task].set_index("representation")
        metric = f"{st['protocol'].iloc[0]} {st['metric'].iloc[0]}"
        best = st["mean"].idxmax()
        s_struct = st["mean"].get("X_structural", float("nan"))
        learned_trained = [r for r in st.index if (reps_meta.get(r) or {}).get("trained") is True]
        gt = g[g["task"] == task] if not g.empty else g
        parts = [f"**{task}** ({metric}): best {best} {st.loc[best, 'mean']:.3f}; X_structural {s_struct:.3f}"]
        if "X_color" in st.index:
            parts.append(f"X_color {st.loc['X_color', 'mean']:.3f}")
        for ref in ("X_structural", "untrained twins"):
            sub = gt[gt["reference"] == ref] if not gt.empty else gt
            if not len(sub):
                continue
            sub_tr = sub[sub["representation"].isin(learned_trained)]
            counts = sub["verdict"].value_counts().to_dict()
            tr = ", ".join(f"{r}: {v} ({d:+.3f} [{lo:+.3f}, {hi:+.3f}])" for r, v, d, lo, hi in
                           sub_tr[["representation", "verdict", "diff", "ci_low", "ci_high"]].itertuples(index=False))
            parts.append(f"vs {ref}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                         + (f"; trained networks: {tr}" if tr else ""))
        tflags = [f for f in flags if task in f]
        dis = [f for f in tflags if "order" in f.lower() or "disagree" in f.lower() or "rank" in f.lower()]
        short = [f for f in tflags if "predicts" in f and "better than the label" in f]
        parts.append(f"metric disagreement flags: {len(dis)}; shortcut/confound flags: {len(short)}")
        lines.append("- " + "; ".join(parts))
    return lines


# wall time of run_bench's steps (manifest.json "timings"): column -> the timing keys summed into it
STEP_COLUMNS = (
    ("segmentation", ("bench: segment",)),
    ("features", ("bench: features",)),
    ("graph + samples + descriptors", ("bench: graph", "bench: samples", "bench: structural descriptors")),
    ("colour", ("bench: representation color",)),
    ("GNN twins", ("bench: representation gnn_untrained",)),
    ("CNN twins", ("bench: representation cnn_untrained",)),
    ("GNN DGI", ("bench: representation gnn_ssl",)),
    ("CNN SimCLR", ("bench: representation cnn_ssl",)),
    ("evaluate + diagnostics", ("bench: evaluate",)),
    ("tables + plots", ("bench: tables and plots",)),
)
# seconds inside tg.eval.evaluate (uns['tg_eval']['timings']), summed over a set's tasks
EVAL_COLUMNS = ("linear_probe", "knn", "retrieval", "leiden", "hest_ridge", "probes", "cka", "knn_overlap")


def step_seconds(timings: dict) -> dict[str, float]:
    """run_bench's step timings grouped into :data:`STEP_COLUMNS` (a step that did not run is absent)."""
    out = {}
    for col, prefixes in STEP_COLUMNS:
        vals = [float(v) for k, v in timings.items() if any(k.startswith(p) for p in prefixes)]
        if vals:
            out[col] = sum(vals)
    return out


def load_records(outdir: Path, datasets) -> dict[str, dict]:
    """Each set's ``paper.json`` in ``outdir``; a set without one is recorded as not run."""
    records = {}
    for name in datasets:
        p = Path(outdir) / name / "paper.json"
        records[name] = json.loads(p.read_text()) if p.is_file() else {
            "name": name, "config": {}, "status": f"not run (no {name}/paper.json in {outdir})"}
    return records


def _reps_meta(out: Path, rec: dict) -> dict:
    """Provenance records of a set's representations: from paper.json, else from its cached samples."""
    if rec.get("representations_meta"):
        return dict(rec["representations_meta"])
    man = out / "cache" / "samples.h5ad"
    if not man.is_file():
        return {}
    import anndata as ad

    from tissuegraph.bench import _unplain_uns

    s = ad.read_h5ad(man, backed="r")
    meta = _unplain_uns(dict(s.uns.get("representations", {})))
    s.file.close()
    return meta


def _num(x, fmt="{:.0f}") -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return ""
    return fmt.format(x) if x == x else ""


def gather(outdir, datasets, *, command: str, write: Path | None = None, records: dict | None = None,
           started: float | None = None) -> str:
    """Gather the finished sets of ``outdir`` into one report; write ``write``.md/.csv/.json when given.

    ``records``: each set's record (default: read by :func:`load_records`). Sets that did not finish
    are listed with their status (not run, skipped: data missing, failed: the error) and left out of
    the tables. Returns the Markdown text.
    """
    t0 = time.time() if started is None else started
    outdir = Path(outdir)
    records = load_records(outdir, datasets) if records is None else records
    summaries, gaps, probes, flags, reps_meta = [], [], [], [], {}
    for name, rec in records.items():
        out = outdir / name
        if not str(rec.get("status", "")).startswith("done"):
            continue
        for lst, f in ((summaries, "summary.csv"), (gaps, "gaps.csv"), (probes, "probes.csv")):
            if (out / f).is_file():
                lst.append(pd.read_csv(out / f))
        flags += [f"{name}: {f}" for f in rec.get("flags", [])]
        reps_meta.update(_reps_meta(out, rec))
    summary = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
    gap = pd.concat(gaps, ignore_index=True) if gaps else pd.DataFrame()

    la = os.getloadavg()
    lines = ["# The study's claims, checked on the diagnostic benchmark and the real sets", "",
             f"- command: `{command}`",
             f"- tissuegraph {tg.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs shared with "
             f"other sessions (this run at nice 19: its wall times are not speed measurements); load average "
             f"{', '.join(f'{x:.2f}' for x in la)} when gathered", ""]
    lines += ["## Configuration of this run", "",
              "| set | status | samples | nuclei | configuration | seeds (twins) | evaluation splits | training epochs | "
              "wall s | started (UTC) | load average (1 min) before / after |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, rec in records.items():
        c = rec.get("config") or {}
        done = str(rec.get("status", "")).startswith("done")
        f = outdir / name / "summary.csv"
        n_eval = int(pd.read_csv(f)["n"].max()) if done and f.is_file() else ""
        lb = (rec.get("load_before") or [float("nan")])[0]
        la_ = (rec.get("load_after") or [float("nan")])[0]
        te = c.get("train_epochs") or {}
        conf = json.dumps(c["dataset"]) if "dataset" in c else ""
        if c.get("simclr_max_crops") is not None:
            conf += f"; SimCLR trained on at most {c['simclr_max_crops']} crops (all samples embedded)"
        if c.get("skipped_steps"):
            conf += f"; steps not run: {', '.join(c['skipped_steps'])}"
        if c.get("classification_also") is not None and not c.get("quick"):
            conf += f"; scored beside classification: {', '.join(c['classification_also']) or 'nothing'}"
        epochs = f"GNN (DGI) {te['gnn']}, CNN (SimCLR) {te['cnn']}" if te else ""
        seeds = c.get("seeds", "")
        if c.get("quick"):  # --quick: the first seed, untrained networks only
            seeds, epochs = seeds[:1], "none (quick: untrained networks only)"
        lines.append(f"| {name} | {str(rec.get('status', ''))[:160]} | {rec.get('n_samples', '')} | "
                     f"{rec.get('n_nuclei', '')} | {conf} | {seeds} | {n_eval} | {epochs} | "
                     f"{_num(rec.get('seconds'))} | {rec.get('started', '')} | "
                     + (f"{_num(lb, '{:.1f}')} / {_num(la_, '{:.1f}')}" if done else "") + " |")
    timed_sets = {n: r for n, r in records.items() if str(r.get("status", "")).startswith("done") and r.get("timings")}
    if timed_sets:
        lines += ["", "## Where the time goes: wall seconds per step (nice 19, sets running side by side)", "",
                  "| set | " + " | ".join(c for c, _ in STEP_COLUMNS) + " | other (loading, caches, report) | total |",
                  "|---|" + "---|" * (len(STEP_COLUMNS) + 2)]
        for name, rec in timed_sets.items():
            st = step_seconds(rec["timings"])
            other = float(rec.get("seconds", float("nan"))) - sum(st.values())
            # a resumed set: its cached steps ran in an earlier process, so "other" is not defined
            lines.append(f"| {name} | " + " | ".join(_num(st.get(c)) for c, _ in STEP_COLUMNS)
                         + f" | {_num(other) if other >= 0 else 'resumed'} | {_num(rec.get('seconds'))} |")
        ev_sets = {n: r for n, r in timed_sets.items() if r.get("evaluate_timings")}
        if ev_sets:
            lines += ["", "Inside `evaluate` (seconds summed over a set's tasks; linear probe, kNN, retrieval and "
                      "Leiden over every split x seed; probes, CKA and k-NN overlap once):", "",
                      "| set | " + " | ".join(EVAL_COLUMNS) + " |", "|---|" + "---|" * len(EVAL_COLUMNS)]
            for name, rec in ev_sets.items():
                tot = {k: sum(float((d or {}).get(k, 0.0)) for d in rec["evaluate_timings"].values())
                       for k in EVAL_COLUMNS}
                lines.append(f"| {name} | " + " | ".join(_num(tot[k]) if tot[k] else "" for k in EVAL_COLUMNS) + " |")
    cmds = sorted({r["command"] for r in records.values() if r.get("command")})
    if cmds and cmds != [command]:
        lines += ["", "The sets were run by (several processes so that they could run side by side):", ""] + [
            f"- `{c}`" for c in cmds]
    skipped = {f"{n}: {k}": v for n, r in records.items() for k, v in (r.get("skipped") or {}).items()}
    lines += ["", "Seeds: one untrained twin of every network per seed. Evaluation: grouped splits x seeds, the number "
              "of (split, seed) pairs each score is averaged over is in the column above. Steps skipped or failed: "
              + ("; ".join(f"{k} ({v})" for k, v in skipped.items()) or "none") + ".", ""]
    if not summary.empty:
        prim = _primary_rows(summary)
        cols, cell = [], {}
        for t in dict.fromkeys(prim["task"]):
            st = prim[prim["task"] == t]
            col = f"{t} ({st['protocol'].iloc[0]}, {st['metric'].iloc[0]})"
            cols.append(col)
            for _, r in st.iterrows():
                cell[(r["representation"], col)] = _fmt(float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]))
        reps = sorted(dict.fromkeys(prim["representation"]),
                      key=lambda r: (r != "X_structural", not str(r).startswith("X_color"),
                                     bool((reps_meta.get(r) or {}).get("trained")), str(r)))
        lines += ["## Scores: mean [95 % interval] of each task's primary metric", "",
                  "| representation | family | trained | " + " | ".join(cols) + " |",
                  "|---|---|---|" + "---|" * len(cols)]
        for r in reps:
            m = reps_meta.get(r) or {}
            lines.append(f"| {r} | {m.get('family', '')} | {m.get('trained', '')} | "
                         + " | ".join(cell.get((r, c), "") for c in cols) + " |")
        lines.append("")
        lines += ["## The study's claims, checked per task", ""] + claims(summary, gap, flags, reps_meta) + [""]
    if not gap.empty:
        pg = _primary_gaps(gap, summary)
        counts = gap.groupby(["reference", "verdict"]).size().unstack(fill_value=0)
        lines += ["## Baseline gaps: verdict counts over every metric and task", "", _md(counts), "",
                  "## Baseline gaps on each task's primary metric", "",
                  "| task | representation | reference | difference [95 % interval] | verdict |", "|---|---|---|---|---|"]
        lines += [f"| {r.task} | {r.representation} | {r.reference} | {_fmt(r.diff, r.ci_low, r.ci_high)} | {r.verdict} |"
                  for r in pg.itertuples(index=False)]
        lines.append("")
    lines += ["## Flags", ""] + ([f"- {f}" for f in flags] or ["- none"]) + [""]
    lines += [f"Per-set outputs (summary.md, results.csv, gaps.csv, probes.csv, plots, report.html) were written to "
              f"`{outdir}/<set>/`; this command took {time.time() - t0:.0f} s.", ""]
    text = "\n".join(lines)
    if write is not None:
        write = Path(write)
        write.parent.mkdir(parents=True, exist_ok=True)
        write.with_suffix(".md").write_text(text)
        if not summary.empty:
            summary.to_csv(write.with_suffix(".csv"), index=False)
        write.with_suffix(".json").write_text(json.dumps({
            "command": command, "records": records, "gaps": gap.to_dict("records"), "flags": flags,
            "probes": (pd.concat(probes, ignore_index=True).to_dict("records") if probes else []),
            "load_average": la, "version": tg.__version__}, indent=1, default=str))
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--outdir", type=Path, required=True, help="working folder (one sub-folder per data set)")
    ap.add_argument("--datasets", nargs="*", default=list(ALL), help=f"subset of {ALL}")
    ap.add_argument("--quick", action="store_true", help="the quick version of every set (a smoke test)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--segmenter", default="auto")
    ap.add_argument("--gnn-epochs", type=int, default=50, help="epochs of the self-supervised GNN (DGI)")
    ap.add_argument("--cnn-epochs", type=int, default=5,
                    help="epochs of the self-supervised ResNet-18 (SimCLR; ~13 CPU-seconds per epoch per 128 crops of "
                         "112 px on one core: raise it on a GPU)")
    ap.add_argument("--n-synthetic", type=int, default=48, help="diagnostic samples per factor")
    ap.add_argument("--synthetic-size-um", type=float, default=160.0, help="edge of a diagnostic sample, µm")
    ap.add_argument("--spot-sections", type=int, default=6,
                    help="synthetic spot sections (>= 5: the splits are grouped by section, 5 folds)")
    ap.add_argument("--spot-section-um", type=float, default=800.0, help="edge of a synthetic spot section, µm")
    ap.add_argument("--kather-per-class", type=int, default=50,
                    help="tiles per class (0: all; the shared data's Kather subset has 100 per class)")
    ap.add_argument("--crchisto-images", type=int, default=30,
                    help="the first CRCHisto images of each split (0: all; the shared data hold 70 + 10)")
    ap.add_argument("--simclr-max-crops", type=int, default=256,
                    help="the self-supervised CNN (SimCLR) trains on at most this many crops (drawn with the first "
                         "seed; every sample is still embedded); recorded in the results")
    ap.add_argument("--skip-steps", nargs="*", default=[], choices=["color", "gnn_untrained", "cnn_untrained",
                                                                      "gnn_ssl", "cnn_ssl"],
                    help="representation steps not to run (recorded in the results), e.g. cnn_ssl on a busy CPU")
    ap.add_argument("--classification-also", nargs="*", default=["retrieval", "clustering"],
                    choices=["retrieval", "clustering"],
                    help="protocols scored beside classification on every classification task (the metric "
                         "disagreement check compares their orderings); Leiden clustering per split is the slow one")
    ap.add_argument("--rerun", action="store_true", help="run every set again even if it finished before")
    ap.add_argument("--gather-only", action="store_true", help="only gather the sets that have finished")
    ap.add_argument("--write", type=Path, default=RESULTS / "paper_comparison", help="result stem (.md/.csv/.json)")
    args = ap.parse_args(argv)
    if not args.seeds:
        raise SystemExit("--seeds needs at least one seed")
    if not args.quick and "synthetic_spots" in args.datasets and args.spot_sections < 5:
        raise SystemExit(f"--spot-sections {args.spot_sections}: the synthetic spot splits are grouped by section "
                         "into 5 folds, so at least 5 sections are needed")
    args.kather_per_class = args.kather_per_class or None  # 0: all
    args.crchisto_images = args.crchisto_images or None
    for name in args.datasets:
        if name not in ALL:
            raise SystemExit(f"unknown data set {name!r}; choose from {ALL}")
    tg.settings.progress = False
    from tissuegraph._logging import set_verbosity

    set_verbosity("INFO")  # the timings of every step go to stderr
    command = "PYTHONPATH=. python benchmarks/paper_comparison.py " + " ".join(sys.argv[1:] if argv is None else argv)
    t0 = time.time()
    if args.gather_only:
        records = load_records(args.outdir, args.datasets)
    else:
        records = {name: run_one(name, args, command) for name in args.datasets}
    print(gather(args.outdir, args.datasets, command=command, write=args.write, records=records, started=t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
