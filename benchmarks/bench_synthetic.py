"""Streaming the synthetic H&E slide to disk: throughput and flat memory.

``tg.datasets.synthetic_slide`` renders strip by strip and writes a pyramidal TIFF plus its label image,
so its peak memory must not grow with the slide height (only with the strip width and, O(number of
nuclei), with the ground-truth table). This script writes two slides of the same width and different
heights, each in a fresh process, and reports megapixels per second (wall and CPU) and the peak resident
memory of each, with the ratio of the peak RSS of the tall slide to the short one (flat = ~1.0).

Three runs per shape, each in its own process: the full ``synthetic_slide`` (render + write the RGB and
label pyramids + ground truth), the renderer alone (strips rendered and the truth accumulated, nothing
written) and, as the reference, the slide writer alone (``tg.io.SlideWriter`` writing the same RGB and
label shapes from one precomputed strip). This separates the memory and time of the generator from
those of the writer.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_synthetic.py --size 20000
    PYTHONPATH=. .venv/bin/python benchmarks/bench_synthetic.py --size 50000 --heights 5000 50000
    PYTHONPATH=. .venv/bin/python benchmarks/bench_synthetic.py --size 8192 --square   # 4096² and 8192²

Writes ``benchmarks/results/synthetic_<width>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    return kb / 1024 if sys.platform != "darwin" else kb / 2 ** 20


def child(mode: str, width: int, height: int, out: Path, seed: int, mpp: float) -> dict:
    import numpy as np

    import tissuegraph as tg

    rss0 = _peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    res: dict = {}
    if mode == "synthetic":
        s = tg.datasets.synthetic_slide(out / "bench.tiff", size=(width, height), mpp=mpp, seed=seed,
                                        progress=False)
        res.update(n_nuclei=s.n_nuclei, n_glands=s.metadata["counts"]["glands"],
                   render_seconds=s.metadata["render_seconds"])
    elif mode == "render":  # the generator alone: strips rendered and ground truth accumulated, not written
        from tissuegraph.datasets import _synthetic as S

        p = S._resolve(size=(width, height), mpp=mpp, seed=seed, tissue_fraction=0.6, density=1.0, stain=None,
                       stain_intensity=1.0, blur_um=0.0, noise=0.02, region_classes=S.REGION_CLASSES,
                       region_size_um=300.0)
        layout, renderer = S._build(p)
        truth = S._Truth()
        for y0, rgb, lab in S._strips(layout, renderer, 512, progress=False):
            truth.add(lab, y0, 0)
        res.update(n_nuclei=len(truth.table(layout)))
    else:  # the writer alone, same shapes, content precomputed once
        ts = 512
        rng = np.random.default_rng(0)
        rgb = rng.integers(150, 256, (ts, width, 3), dtype=np.uint8)
        lab = np.zeros((ts, width), np.uint32)
        lab[::16, ::16] = np.arange(1, lab[::16, ::16].size + 1, dtype=np.uint32).reshape(lab[::16, ::16].shape)
        with tg.io.SlideWriter(out / "writer.tiff", shape=(height, width, 3), dtype=np.uint8, mpp=mpp,
                               tile_size=ts) as wr, \
                tg.io.SlideWriter(out / "writer.labels.tiff", shape=(height, width), dtype=np.uint32, mpp=mpp,
                                  tile_size=ts, resample="nearest") as wl:
            for y0 in range(0, height, ts):
                h = min(ts, height - y0)
                wr.write(rgb[:h])
                wl.write(lab[:h])
    res.update(mode=mode, width=width, height=height, megapixels=width * height / 1e6,
               wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0,
               peak_rss_mb=_peak_rss_mb(), rss_at_start_mb=rss0,
               bytes_on_disk=sum(f.stat().st_size for f in out.iterdir() if f.is_file()))
    return res


def run_child(mode: str, width: int, height: int, seed: int, mpp: float, keep: Path | None) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"tg_bench_{mode}_", dir=keep))
    try:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, __file__, "--child", mode, str(width), str(height), str(out),
               "--seed", str(seed), "--mpp", str(mpp)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"child {mode} {width}x{height} failed:\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if keep is None:
            shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=20000, help="slide width in px (and the tall slide's height)")
    ap.add_argument("--heights", type=int, nargs=2, default=None,
                    help="heights of the short and the tall slide (default: size/4 and size)")
    ap.add_argument("--square", action="store_true", help="two square slides, size/2 and size, instead")
    ap.add_argument("--mpp", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-writer", action="store_true", help="skip the writer-only reference")
    ap.add_argument("--no-render-only", action="store_true", help="skip the render-only (no writing) runs")
    ap.add_argument("--keep", type=Path, default=None, help="keep the slides under this folder")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--child", nargs=4, metavar=("MODE", "W", "H", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        mode, w, h, out = args.child
        print(json.dumps(child(mode, int(w), int(h), Path(out), args.seed, args.mpp)))
        return
    W = args.size
    if args.square:
        shapes = [(W // 2, W // 2), (W, W)]
    else:
        hs = args.heights or (max(512, W // 4), W)
        shapes = [(W, hs[0]), (W, hs[1])]
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    modes = ["synthetic"] + ([] if args.no_render_only else ["render"]) + ([] if args.no_writer else ["writer"])
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for mode in modes:
        for w, h in shapes:
            print(f"{mode} {w} x {h} ...", flush=True)
            r = run_child(mode, w, h, args.seed, args.mpp, args.keep if mode == "synthetic" else None)
            print(f"  {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, {r['megapixels'] / r['cpu_s']:.2f} MP/s (CPU), "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB" + (f", {r['n_nuclei']} nuclei" if "n_nuclei" in r else ""),
                  flush=True)
            runs[mode].append(r)

    def ratios(rows):
        small, big = rows
        return {"megapixels": [r["megapixels"] for r in rows],
                "mp_per_s_wall": [r["megapixels"] / r["wall_s"] for r in rows],
                "mp_per_s_cpu": [r["megapixels"] / r["cpu_s"] for r in rows],
                "peak_rss_mb": [r["peak_rss_mb"] for r in rows],
                "area_ratio": big["megapixels"] / small["megapixels"],
                "peak_rss_ratio": big["peak_rss_mb"] / small["peak_rss_mb"]}

    summary = {m: ratios(rows) for m, rows in runs.items()}
    if "writer" in runs:
        summary["synthetic_over_writer_cpu"] = runs["synthetic"][-1]["cpu_s"] / runs["writer"][-1]["cpu_s"]
    result = {
        "benchmark": "synthetic_slide streaming",
        "command": "PYTHONPATH=. .venv/bin/python benchmarks/bench_synthetic.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "runs": runs, "summary": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"synthetic_{W}{'_square' if args.square else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    what = {"synthetic": "synthetic_slide (render + write)", "render": "render only (no writing)",
            "writer": "SlideWriter alone (RGB + labels)"}
    lines = [
        f"# synthetic_slide streaming ({W} px wide, mpp {args.mpp}, seed {args.seed})", "",
        f"`{result['command']}`", "",
        "| run | W x H | MP | wall s | CPU s | MP/s (CPU) | peak RSS MB | nuclei |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, rows in runs.items():
        for r in rows:
            lines.append(f"| {what[mode]} | {r['width']} x {r['height']} | {r['megapixels']:.0f} | {r['wall_s']:.1f} "
                         f"| {r['cpu_s']:.1f} | {r['megapixels'] / r['cpu_s']:.2f} | {r['peak_rss_mb']:.0f} "
                         f"| {r.get('n_nuclei', '-')} |")
    lines.append("")
    for mode in runs:
        lines.append(f"- {what[mode]}: area x{summary[mode]['area_ratio']:.2f} -> peak RSS "
                     f"x**{summary[mode]['peak_rss_ratio']:.2f}** (flat = 1)")
    if "writer" in runs:
        lines.append(f"- synthetic slide / writer alone, CPU time at the larger size: "
                     f"{summary['synthetic_over_writer_cpu']:.1f}x (the rest is rendering)")
    lines.append(f"- load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())} on "
                 f"{os.cpu_count()} CPUs (shared machine: wall times are upper bounds; CPU times are the "
                 "better measure)")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
