"""Patch embedding: tg.emb.patches on a real TIFF slide against bare model(batch) on tensors in memory.

Three measurements, in one run:

1. **Throughput** (patches/s) of ResNet-18 and ResNet-50 at 224 px, batch 32, torch threads = 2:
   ``tg.emb.patches`` on grid samples of a synthetic slide (``tg.datasets.synthetic_slide``, a tiled
   pyramidal TIFF, so reading is real: TIFF decode, crop, float conversion, normalisation, pooling)
   against the bare timm model called on the same number of batches of the same size, already in memory
   as float tensors (no reading at all). Repeats are interleaved (bare, tissuegraph, bare, ...), so load
   from other processes hits both alike; medians and the spread are reported with the load average.
2. **Peak RSS** of ``tg.emb.patches`` (ResNet-18) on a slide and on one of 4x the area, each in a fresh
   subprocess (``ru_maxrss``).
3. **SimCLR**: wall time of one epoch of ``tg.emb.train_patches`` (ResNet-18, 96 px views, batch 64) on
   the smaller slide's crops.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_patch_emb.py

Writes ``benchmarks/results/patch_emb.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def grid_samples_of(slide_path: str, *, patch_px: int, limit: int | None = None):
    """Grid samples tiling the slide with patch_px level-0 px boxes (no cells needed)."""
    import anndata as ad

    import tissuegraph as tg

    with tg.io.open_slide(slide_path) as s:
        w, h = s.dimensions
        sid = s.slide_id
        mpp = s.mpp
    xs = np.arange(0, w - patch_px + 1, patch_px)
    ys = np.arange(0, h - patch_px + 1, patch_px)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    gx, gy = gx.ravel(), gy.ravel()
    if limit is not None:
        gx, gy = gx[:limit], gy[:limit]
    obs = pd.DataFrame({"slide": sid, "sample_kind": "grid", "bbox_x0": gx - 0.5, "bbox_y0": gy - 0.5,
                        "bbox_x1": gx + patch_px - 0.5, "bbox_y1": gy + patch_px - 0.5},
                       index=[f"p{i}" for i in range(len(gx))])
    a = ad.AnnData(obs=obs)
    a.uns["spatial"] = {sid: {"scalefactors": {"mpp": mpp}}}
    return a


def make_slide(folder: Path, size: int, seed: int = 0) -> str:
    import tissuegraph as tg

    path = folder / f"synthetic_{size}.tiff"
    if not path.exists():
        tg.datasets.synthetic_slide(path, size=size, mpp=0.5, seed=seed, tissue_fraction=0.9, progress=False)
    return str(path)


def throughput(slide_path: str, arch: str, *, n_patches: int, batch: int, repeats: int) -> dict:
    import torch

    import tissuegraph as tg
    from tissuegraph.models.patch import PatchEncoder

    samples = grid_samples_of(slide_path, patch_px=224, limit=n_patches)
    n = samples.n_obs
    enc = PatchEncoder(arch, seed=0)
    model = enc.model.eval()
    x = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    n_batches = int(np.ceil(n / batch))
    sizes = [min(batch, n - i * batch) for i in range(n_batches)]
    x_cl = x.contiguous(memory_format=torch.channels_last)  # the layout tg's reader hands to the model
    bare, bare_cl, ours = [], [], []
    with torch.inference_mode():
        model(x[:2])  # warm-up (allocator, oneDNN primitives)
        model(x_cl[:2])
    tg.emb.patches(samples[:batch].copy(), slide_path, model=enc, mpp=0.5, size=224, batch_size=batch,
                   key_added="warm", progress=False)

    cpu = {"bare": [], "bare_cl": [], "tg": []}  # process CPU seconds per patch (all threads)

    def run_bare(t, what):
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            for b in sizes:
                model(t[:b])
        cpu[what].append((time.process_time() - c0) / n)
        return n / (time.perf_counter() - t0)

    for _ in range(repeats):
        bare.append(run_bare(x, "bare"))
        t0, c0 = time.perf_counter(), time.process_time()
        tg.emb.patches(samples, slide_path, model=enc, mpp=0.5, size=224, batch_size=batch, key_added="bench",
                       progress=False)
        cpu["tg"].append((time.process_time() - c0) / n)
        ours.append(n / (time.perf_counter() - t0))
        bare_cl.append(run_bare(x_cl, "bare_cl"))
    best_cpu = [min(a, b) for a, b in zip(cpu["bare"], cpu["bare_cl"])]
    cpu_ratios = [b / o for b, o in zip(best_cpu, cpu["tg"])]
    best = [max(a, b) for a, b in zip(bare, bare_cl)]
    ratios = [o / b for o, b in zip(ours, best)]
    return {"arch": arch, "n_patches": n, "batch_size": batch, "repeats": repeats,
            "bare_patches_per_s": bare, "bare_channels_last_patches_per_s": bare_cl, "tg_patches_per_s": ours,
            "ratios_vs_best_bare": ratios, "ratios_vs_nchw_bare": [o / b for o, b in zip(ours, bare)],
            "bare_median": float(np.median(bare)), "bare_channels_last_median": float(np.median(bare_cl)),
            "tg_median": float(np.median(ours)), "ratio_median": float(np.median(ratios)),
            "ratio_of_medians": float(np.median(ours) / max(np.median(bare), np.median(bare_cl))),
            "cpu_s_per_patch": cpu, "cpu_ratios_vs_best_bare": cpu_ratios,
            "cpu_ratio_median": float(np.median(cpu_ratios))}


def rss_child(slide_path: str, mpp: float) -> None:
    """Run in a subprocess: embed every grid patch; print JSON with the peak RSS."""
    import torch

    import tissuegraph as tg

    torch.set_num_threads(2)
    tg.settings.progress = False
    samples = grid_samples_of(slide_path, patch_px=int(round(224 * mpp / 0.5)))
    t0 = time.perf_counter()
    tg.emb.patches(samples, slide_path, model="resnet18", mpp=mpp, size=224, batch_size=32, progress=False)
    print(json.dumps({"n_samples": int(samples.n_obs), "seconds": time.perf_counter() - t0,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def simclr_epoch(slide_path: str, *, n_crops: int, epochs: int) -> dict:
    import tissuegraph as tg

    samples = grid_samples_of(slide_path, patch_px=int(round(96 * 1.0 / 0.5)))
    t0 = time.perf_counter()
    enc, card = tg.emb.train_patches(samples, slide_path, model="resnet18", mpp=1.0, size=96, max_crops=n_crops,
                                     epochs=epochs, batch_size=64, seed=0, progress=False)
    return {"arch": "resnet18", "size": 96, "batch_size": 64, "n_crops": card["n_images"], "epochs": epochs,
            "seconds_per_epoch": card["seconds_per_epoch"], "loss_log": card["loss_log"],
            "total_with_reading_s": time.perf_counter() - t0}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="edge of the smaller slide (px at 0.5 µm/px)")
    ap.add_argument("--n-patches", type=int, default=192)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--archs", default="resnet18,resnet50")
    ap.add_argument("--rss-mpp", type=float, default=0.5)
    ap.add_argument("--simclr-crops", type=int, default=256)
    ap.add_argument("--simclr-epochs", type=int, default=1)
    ap.add_argument("--folder", default=None, help="where the synthetic slides are written (default: a temp dir)")
    ap.add_argument("--out", default=str(HERE / "results" / "patch_emb"))
    ap.add_argument("--skip", default="", help="comma list of parts to skip: throughput,rss,simclr")
    ap.add_argument("--rss-child", nargs=2, metavar=("SLIDE", "MPP"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.rss_child:
        rss_child(a.rss_child[0], float(a.rss_child[1]))
        return
    import torch

    import tissuegraph as tg

    torch.set_num_threads(2)
    tg.settings.progress = False
    skip = set(filter(None, a.skip.split(",")))
    folder = Path(a.folder) if a.folder else Path(tempfile.mkdtemp(prefix="tg_bench_patch_"))
    folder.mkdir(parents=True, exist_ok=True)
    res = {"command": "PYTHONPATH=. .venv/bin/python benchmarks/bench_patch_emb.py " + " ".join(sys.argv[1:]),
           "machine": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__, "load_average_start": list(os.getloadavg())}
    small = make_slide(folder, a.size)
    big = make_slide(folder, a.size * 2)
    if "throughput" not in skip:
        res["throughput"] = [throughput(small, arch, n_patches=a.n_patches, batch=a.batch, repeats=a.repeats)
                             for arch in a.archs.split(",")]
    if "rss" not in skip:
        rss = {}
        for name, path in (("slide", small), ("slide_4x_area", big)):
            out = subprocess.run([sys.executable, __file__, "--rss-child", path, str(a.rss_mpp)],
                                 capture_output=True, text=True, check=True, env=os.environ.copy())
            rss[name] = json.loads(out.stdout.strip().splitlines()[-1])
            rss[name]["size"] = a.size if path == small else 2 * a.size
        rss["growth"] = rss["slide_4x_area"]["peak_rss_mib"] / rss["slide"]["peak_rss_mib"] - 1
        rss["mpp"] = a.rss_mpp
        res["rss"] = rss
    if "simclr" not in skip:
        res["simclr"] = simclr_epoch(big, n_crops=a.simclr_crops, epochs=a.simclr_epochs)
    res["load_average_end"] = list(os.getloadavg())
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    out.with_suffix(".md").write_text(report(res))
    print(report(res))


def report(r: dict) -> str:
    lines = ["# Patch embedding benchmark", "", f"Command: `{r['command']}`", "",
             f"Machine: {r['machine']}, {r['cpu_count']} CPUs, torch {r['torch']} with {r['torch_threads']} threads. "
             f"Load average (1/5/15 min) at start {', '.join(f'{v:.1f}' for v in r['load_average_start'])}, at end "
             f"{', '.join(f'{v:.1f}' for v in r['load_average_end'])}"
             + (" — the CPU was shared with other jobs, so absolute speeds are low; the ratios compare runs "
                "interleaved under the same load." if r["load_average_start"][0] > r["cpu_count"] else "."), ""]
    if "throughput" in r:
        lines += ["## Throughput at 224 px (patches/s, median of interleaved repeats)", "",
                  "| model | patches | batch | bare model(batch), NCHW | bare, channels-last | "
                  "tg.emb.patches from the TIFF | ratio to the faster bare (median of repeats) | per-repeat ratios |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in r["throughput"]:
            lines.append(f"| {t['arch']} | {t['n_patches']} | {t['batch_size']} | {t['bare_median']:.2f} | "
                         f"{t['bare_channels_last_median']:.2f} | {t['tg_median']:.2f} | **{t['ratio_median']:.3f}** | "
                         f"{', '.join(f'{v:.3f}' for v in t['ratios_vs_best_bare'])} |")
        if all("cpu_ratio_median" in t for t in r["throughput"]):
            lines += ["", "CPU time per patch (process time of all threads; insensitive to other processes' load):", "",
                      "| model | bare NCHW (ms) | bare channels-last (ms) | tg.emb.patches (ms) | "
                      "CPU-time ratio, faster bare / tg (median) | per-repeat |", "|---|---|---|---|---|---|"]
            for t in r["throughput"]:
                c = t["cpu_s_per_patch"]
                lines.append(f"| {t['arch']} | {1e3 * np.median(c['bare']):.1f} | "
                             f"{1e3 * np.median(c['bare_cl']):.1f} | "
                             f"{1e3 * np.median(c['tg']):.1f} | **{t['cpu_ratio_median']:.3f}** | "
                             f"{', '.join(f'{v:.3f}' for v in t['cpu_ratios_vs_best_bare'])} |")
        lines += ["", "Each repeat runs bare NCHW, tg.emb.patches, bare channels-last back to back; the ratio divides "
                  "tg's speed by the faster of the two bare runs of that repeat. tg's reader hands the model "
                  "channels-last tensors (the uint8 HWC tiles seen as NCHW, no transposing copy), the layout "
                  "oneDNN convolutions run fastest in on this CPU.", ""]
    if "rss" in r:
        s, b = r["rss"]["slide"], r["rss"]["slide_4x_area"]
        lines += [f"## Peak RSS (ResNet-18, 224 px at {r['rss']['mpp']:g} µm/px, fresh process each)", "",
                  "| slide | samples | seconds | peak RSS (MiB) |", "|---|---|---|---|",
                  f"| {s['size']}² px | {s['n_samples']} | {s['seconds']:.1f} | {s['peak_rss_mib']:.0f} |",
                  f"| {b['size']}² px (4x area) | {b['n_samples']} | {b['seconds']:.1f} | {b['peak_rss_mib']:.0f} |",
                  "", f"Growth of peak RSS: **{100 * r['rss']['growth']:+.1f} %**.", ""]
    if "simclr" in r:
        c = r["simclr"]
        lines += ["## SimCLR training cost", "",
                  f"ResNet-18, {c['n_crops']} crops, {c['size']} px views, batch {c['batch_size']}: "
                  f"**{np.median(c['seconds_per_epoch']):.1f} s per epoch** "
                  f"(epochs: {', '.join(f'{v:.1f}' for v in c['seconds_per_epoch'])} s; losses "
                  f"{', '.join(f'{v:.3f}' for v in c['loss_log'])}; {c['total_with_reading_s']:.1f} s including "
                  "reading the crops and building the model).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
