"""Per-nucleus embeddings: tg.emb.cells (one feature map per tile) against one crop per nucleus.

A synthetic RGB slide (textured noise, ``--size`` px square at 0.5 µm/px) carries ``--nuclei`` elliptic
nuclei (contours as in the nucleus table) at a tissue-like density (about one per 400 px², 100 µm²). Both ways use the same untrained
ResNet-18 (seed 0), the same block (``layer=2``, stride 8), the same area-weighted mask pooling
(``tissuegraph.emb._cells._pool_tile``), the same torch threads:

* **tg.emb.cells**: cores of ``--tile`` px plus the automatic receptive-field margin, each tile through
  the network once (mask pooling);
* **crops** ("the obvious way"): one ``--crop`` px crop centred on every nucleus, read from the slide,
  batched through the same encoder, the crop's feature map mask-pooled.

Repeats are interleaved (cells, crops, cells, ...) after one untimed warm-up of each on 200 nuclei (the
receptive-field probe of tg.emb.cells is cached then; its one-off cost is reported separately).

Usage (from the repository root)::

    flock /tmp/tg-bench.lock env PYTHONPATH=. .venv/bin/python benchmarks/bench_cell_emb.py

Writes ``benchmarks/results/cell_emb.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _runinfo as RI  # noqa: E402


def scene(size: int, n: int, seed: int = 0):
    import anndata as ad

    import tissuegraph as tg
    from tissuegraph._anndata import set_slide_metadata

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size // 8 + 1, size // 8 + 1, 3)).astype(np.uint8)
    img = np.kron(base, np.ones((8, 8, 1), np.uint8))[:size, :size]
    img = (img // 2 + rng.integers(0, 128, (size, size, 3), dtype=np.uint8)).astype(np.uint8)
    cx = rng.uniform(10, size - 10, n)
    cy = rng.uniform(10, size - 10, n)
    a = rng.uniform(3, 8, n)
    b = rng.uniform(3, 6, n)
    th = rng.uniform(0, np.pi, n)
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    contours = []
    for i in range(n):
        x = cx[i] + a[i] * np.cos(t) * np.cos(th[i]) - b[i] * np.sin(t) * np.sin(th[i])
        y = cy[i] + a[i] * np.cos(t) * np.sin(th[i]) + b[i] * np.sin(t) * np.cos(th[i])
        contours.append(np.stack([x, y], 1))
    ids = np.arange(1, n + 1)
    nuclei = pd.DataFrame({"nucleus_id": ids, "x": cx, "y": cy, "contour": contours})
    obs = pd.DataFrame({"nucleus_id": ids, "slide": pd.Categorical(["s"] * n)}, index=ids.astype(str))
    cells = ad.AnnData(obs=obs)
    cells.obsm["spatial"] = np.stack([cx, cy], 1)
    set_slide_metadata(cells, "s", mpp=0.5)
    return tg.io.open_slide(img, mpp=0.5), nuclei, cells


def crops_way(cells, slide, nuclei, *, crop: int, batch: int, layer: int):
    """One crop per nucleus through the same encoder; mask pooling of the crop's feature map."""
    import torch

    from tissuegraph.emb import _pixels as P
    from tissuegraph.emb._cells import _pool_tile
    from tissuegraph.models.patch import PatchEncoder

    enc = PatchEncoder("resnet18", seed=0).eval()
    S = enc.layer_stride(layer)
    xy = cells.obsm["spatial"]
    polys = list(nuclei["contour"])
    out = np.zeros((cells.n_obs, enc.layer_width(layer)), np.float32)
    with torch.inference_mode():
        for i0 in range(0, cells.n_obs, batch):
            rows = np.arange(i0, min(i0 + batch, cells.n_obs))
            X0 = np.round(xy[rows, 0]) - crop // 2
            Y0 = np.round(xy[rows, 1]) - crop // 2
            imgs = np.stack([P.read_tile(slide, float(x), float(y), 1.0, crop) for x, y in zip(X0, Y0)])
            x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(255.0)
            F = enc.feature_maps(x, layers=[layer])[0].permute(0, 2, 3, 1).double().numpy()
            for k, r in enumerate(rows):
                Z, _ = _pool_tile(F[k], S, crop, X0[k], Y0[k], 1.0, xy[[r], 0], xy[[r], 1], [polys[r]], "mask")
                out[r] = Z[0]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--nuclei", type=int, default=2500)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64, help="crops per forward pass (tiles: --tile-batch)")
    ap.add_argument("--tile-batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "cell_emb"))
    args = ap.parse_args(argv)

    import torch

    import tissuegraph as tg
    from tissuegraph.emb import _cells as C

    torch.set_num_threads(args.threads)
    info = RI.machine()
    slide, nuclei, cells = scene(args.size, args.nuclei)
    layer = 2

    t0 = time.perf_counter()
    from tissuegraph.models.patch import PatchEncoder

    rf = C.receptive_radius(PatchEncoder("resnet18", seed=0), layer)
    probe_s = time.perf_counter() - t0
    sub = cells[:200].copy()
    tg.emb.cells(sub, slide, nuclei=nuclei, layer=layer, tile_size=args.tile, batch_size=args.tile_batch,
                 progress=False)
    crops_way(sub, slide, nuclei.iloc[:200], crop=args.crop, batch=args.batch, layer=layer)

    t_cells, t_crops, Zc = [], [], None
    tile_batch = args.tile_batch  # a tile of 656 px holds ~100 crops of 64 px: fewer per batch
    for _ in range(args.repeats):
        c = cells.copy()
        t = time.perf_counter()
        tg.emb.cells(c, slide, nuclei=nuclei, layer=layer, tile_size=args.tile, batch_size=tile_batch,
                     key_added="e", progress=False)
        t_cells.append(time.perf_counter() - t)
        t = time.perf_counter()
        Zk = crops_way(cells, slide, nuclei, crop=args.crop, batch=args.batch, layer=layer)
        t_crops.append(time.perf_counter() - t)
        Zc = c.obsm["X_e"]
    rec = c.uns["representations"]["X_e"]["params"]
    n = cells.n_obs
    s_cells = RI.spread([n / v for v in t_cells])
    s_crops = RI.spread([n / v for v in t_crops])
    cos = np.sum(Zc * Zk, 1) / (np.linalg.norm(Zc, axis=1) * np.linalg.norm(Zk, axis=1))
    res = {
        "command": RI.command("bench_cell_emb.py", argv),
        "model": "resnet18 (untrained, seed 0), layer 2 (stride 8), mask pooling",
        "slide_px": args.size, "mpp": 0.5, "nuclei": n, "tile_size": args.tile, "crop": args.crop,
        "batch_tiles": tile_batch, "batch_crops": args.batch, "torch_threads": args.threads,
        "margin_px": rec["margin"], "tile_input_px": rec["tile_input"], "receptive_radius_px": rf,
        "n_tiles": rec["n_tiles"], "receptive_probe_s_once": round(probe_s, 2),
        "cells_per_s_tg_emb_cells": s_cells, "cells_per_s_crops": s_crops,
        "speedup_median": s_cells["median"] / s_crops["median"],
        "px_through_network": {"tiles": rec["n_tiles"] * rec["tile_input"] ** 2, "crops": n * args.crop ** 2},
        "cosine_tiles_vs_crops": {"median": float(np.median(cos)), "min": float(cos.min())},
        "note_equality": ("the crop way is not the same embedding: a 64 px crop gives the network less context "
                          "than the receptive field and zero padding at the crop's edge"),
    }
    res["machine"] = RI.finish(info)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    md = [f"# Per-nucleus embeddings: tg.emb.cells vs one crop per nucleus", "",
          f"`{res['command']}`", "",
          f"{n} nuclei on a {args.size}² px synthetic slide at 0.5 µm/px; ResNet-18 (untrained) block 2, mask "
          f"pooling; {args.threads} torch threads.", "",
          "| way | cells/s (median, min–max, n) |", "|---|---|",
          f"| tg.emb.cells ({rec['n_tiles']} tiles of {rec['tile_input']} px = {args.tile} + 2×{rec['margin']} margin) "
          f"| {RI.fmt(s_cells, 0)} |",
          f"| one {args.crop} px crop per nucleus, batch {args.batch} | {RI.fmt(s_crops, 0)} |", "",
          f"Speed-up (medians): **{res['speedup_median']:.1f}×**. Pixels through the network: tiles "
          f"{res['px_through_network']['tiles'] / 1e6:.1f} M, crops {res['px_through_network']['crops'] / 1e6:.1f} M.",
          f"Receptive-field probe (once per architecture and block, cached): {probe_s:.1f} s.",
          f"Cosine similarity tiles vs crops per nucleus: median {res['cosine_tiles_vs_crops']['median']:.3f} "
          f"(min {res['cosine_tiles_vs_crops']['min']:.3f}) — {res['note_equality']}.", "",
          res["machine"]["note"]]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
