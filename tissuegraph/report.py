"""``OUTDIR/report.html``: one self-contained page (pictures embedded as PNG) about a run.

:func:`write_report` reads what a run left in ``outdir`` (``manifest.json``, ``cells.h5ad``,
``samples.h5ad``, ``nuclei.parquet``, the slide, ``demo_report.json``) or takes the objects directly,
and writes sections for what exists: what was run (parameters, versions, timings), segmentation
quality, the slide overlay, the representations, the evaluation results with a plain-language reading
of the baseline gaps, and diagnostics. No external links or scripts: the file can be mailed or
archived as it is.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import _keys as K
from ._logging import logger, timed

__all__ = ["write_report", "read_gaps_in_words"]

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;background:#f6f7f9;
color:#1d2330;line-height:1.45}
header{background:#1f3a5f;color:#fff;padding:22px 40px}
header h1{margin:0 0 4px 0;font-size:26px;font-weight:600}
header p{margin:0;opacity:.85;font-size:14px}
nav{background:#fff;border-bottom:1px solid #dde1e7;padding:8px 40px;font-size:14px;position:sticky;top:0}
nav a{color:#1f3a5f;margin-right:18px;text-decoration:none}
main{max-width:1180px;margin:0 auto;padding:10px 40px 60px 40px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:18px 24px;margin:22px 0}
h2{margin:0 0 12px 0;font-size:20px;color:#1f3a5f;border-bottom:2px solid #e8ecf2;padding-bottom:6px}
h3{font-size:16px;margin:18px 0 8px 0}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px 0}
th,td{border-bottom:1px solid #e4e7ec;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f3f7;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td{word-break:break-all}
figure{margin:10px 0 16px 0}
figure img{max-width:100%;border:1px solid #e4e7ec;border-radius:4px}
figcaption{font-size:13px;color:#56607a;margin-top:4px}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 12px 0}
.kpi{background:#f0f3f7;border-radius:6px;padding:8px 14px;min-width:120px}
.kpi b{display:block;font-size:20px;color:#1f3a5f}
.kpi span{font-size:12px;color:#56607a}
.better{color:#1a7f3c;font-weight:600}.worse{color:#b42318;font-weight:600}.same{color:#56607a;font-weight:600}
.note{background:#fff8e6;border-left:4px solid #f0b429;padding:8px 12px;font-size:14px}
ul.reading li{margin-bottom:5px}
details{margin:8px 0}summary{cursor:pointer;color:#1f3a5f}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
"""


def _png(fig_or_ax, *, dpi: int = 100) -> str:
    import matplotlib.pyplot as plt

    fig = getattr(fig_or_ax, "figure", None) or np.ravel(fig_or_ax)[0].figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(b64: str, caption: str) -> str:
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(df: pd.DataFrame, *, max_rows: int = 60, digits: int = 3) -> str:
    df = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for v in r:
            if isinstance(v, (float, np.floating)):
                cells.append(f'<td class="num">{"" if not np.isfinite(v) else f"{v:.{digits}g}" if abs(v) >= 1e4 else f"{v:.{digits}f}"}</td>')
            elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                cells.append(f'<td class="num">{v:,}</td>')
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _kv(d: dict) -> str:
    return _table(pd.DataFrame({"name": list(d), "value": [json.dumps(v) if isinstance(v, (dict, list)) else v
                                                            for v in d.values()]}))


def _kpis(items: list[tuple[str, str]]) -> str:
    return '<div class="kpis">' + "".join(f'<div class="kpi"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>'
                                          for k, v in items) + "</div>"


def _short(rep: str) -> str:
    return rep[2:] if str(rep).startswith("X_") else str(rep)


def read_gaps_in_words(gaps: pd.DataFrame, *, representations: dict | None = None) -> list[str]:
    """Plain-language sentences for the ``gaps`` table of ``tg.eval.evaluate`` (one per row, plus a
    summary line first)."""
    if gaps is None or len(gaps) == 0:
        return []
    representations = representations or {}
    words = {"better": ("is better than", "better"), "worse": ("is worse than", "worse"),
             "not distinguishable": ("cannot be told apart from", "same")}
    out = []
    for ref, part in gaps.groupby("reference", sort=False):
        counts = part["verdict"].value_counts()
        n = len(part)
        refname = "the structural baseline" if ref == "X_structural" else \
            ("its untrained (random-weight) twins" if "untrained" in str(ref) else _short(ref))
        out.append(f"<b>Against {html.escape(refname)}</b> ({n} comparison{'s' * (n != 1)}): "
                   f"{counts.get('better', 0)} better, {counts.get('not distinguishable', 0)} not distinguishable, "
                   f"{counts.get('worse', 0)} worse.")
        for _, r in part.sort_values("diff", ascending=False).iterrows():
            phrase, cls = words.get(str(r["verdict"]), ("differs from", "same"))
            fam = representations.get(r["representation"], {})
            kind = ""
            if fam:
                kind = " (" + ", ".join(str(x) for x in [fam.get("family"), "trained" if fam.get("trained") else
                                                        "untrained" if fam.get("learned") else None,
                                                        fam.get("objective")] if x and x != "None") + ")"
            out.append(f"{html.escape(_short(r['representation']))}{html.escape(kind)} "
                       f"<span class=\"{cls}\">{phrase}</span> {html.escape(refname)} on {html.escape(str(r['metric']))} "
                       f"({html.escape(str(r['protocol']))}): difference {r['diff']:+.3f}, 95 % interval "
                       f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
                       + ("; the interval includes 0, so the data do not show a difference." if cls == "same" else "."))
    return out


def _load(outdir: Path, cells, samples, nuclei, manifest):
    if manifest is None and (outdir / "manifest.json").exists():
        manifest = json.loads((outdir / "manifest.json").read_text())
    manifest = manifest or {}
    import anndata as ad

    if cells is None and (outdir / "cells.h5ad").exists():
        cells = ad.read_h5ad(outdir / "cells.h5ad")
    if samples is None and (outdir / "samples.h5ad").exists():
        samples = ad.read_h5ad(outdir / "samples.h5ad")
    if nuclei is None and (outdir / "nuclei.parquet").exists():
        from .pipeline import read_nuclei

        nuclei = read_nuclei(outdir / "nuclei.parquet")
    return cells, samples, nuclei, manifest


def _slide_from(slide, manifest):
    from .io import open_slide

    if slide is not None:
        return slide if not isinstance(slide, (str, os.PathLike)) else open_slide(slide)
    path = (manifest.get("input") or {}).get("path")
    if path and Path(path).exists():
        try:
            return open_slide(path, mpp=(manifest.get("input") or {}).get("mpp"))
        except Exception as exc:  # noqa: BLE001 - the report shows what it can
            logger.warning("report: cannot open the slide %s (%s); no image in the overlay.", path, exc)
    return None


def _truth_for(manifest) -> Any:
    demo = manifest.get("demo") or {}
    p = demo.get("slide")
    if not p:
        return None
    cand = sorted(Path(p).parent.glob("*nuclei*.csv"))
    if cand:
        return pd.read_csv(cand[0])
    return None


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


def write_report(outdir: str | os.PathLike, *, cells=None, samples=None, nuclei: pd.DataFrame | None = None,
                 slide: Any = None, manifest: dict | None = None, title: str | None = None,
                 eval_key: str = K.eval_key, filename: str = "report.html") -> Path:
    """Write ``outdir/report.html`` (self-contained) about the run in ``outdir``.

    Parameters
    ----------
    outdir
        The run's folder (``tissuegraph run``/``demo``/``bench`` output). Missing inputs are read from it.
    cells, samples, nuclei, slide, manifest
        The objects themselves (skip reading the files); any may be None.
    title
        Page title (default: the slide id).
    eval_key
        ``samples.uns`` key of the evaluation tables (``tg.eval.evaluate``'s ``key_added``).
    filename
        Name of the file in ``outdir``.

    Returns
    -------
    Path of the report. Sections appear when their inputs exist.
    """
    from . import pl

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    with timed("report"):
        cells, samples, nuclei, manifest = _load(out, cells, samples, nuclei, manifest)
        s = _slide_from(slide, manifest)
        inp = manifest.get("input") or {}
        slide_id = inp.get("slide_id") or (getattr(s, "slide_id", None)) or out.name
        sections: list[tuple[str, str, str]] = []

        # --- what was run
        body = []
        counts = manifest.get("counts") or {}
        kp = [(k, f"{v:,}") for k, v in counts.items() if isinstance(v, (int, float))]
        if cells is not None and "nuclei" not in counts:
            kp.append(("cells", f"{cells.n_obs:,}"))
        if (manifest.get("timings") or {}).get("total") is not None:
            kp.append(("total time", f"{manifest['timings']['total']:.1f} s"))
        if inp.get("mpp"):
            kp.append(("µm/px", f"{inp['mpp']:.3g}"))
        body.append(_kpis(kp))
        left, right = [], []
        if inp:
            left.append("<h3>Input</h3>" + _kv({k: v for k, v in inp.items() if k != "path"} |
                                                ({"file": Path(inp["path"]).name} if inp.get("path") else {})))
        if manifest.get("timings"):
            t = pd.DataFrame({"step": list(manifest["timings"]), "seconds": [float(v) for v in manifest["timings"].values()]})
            left.append("<h3>Timings</h3>" + _table(t))
        if manifest.get("parameters"):
            right.append("<h3>Parameters</h3>" + _kv(manifest["parameters"]))
        if left or right:
            body.append(f'<div class="grid2"><div>{"".join(left)}</div><div>{"".join(right)}</div></div>')
        if manifest.get("versions"):
            body.append("<details><summary>Package versions</summary>" + _kv(manifest["versions"]) + "</details>")
        if len(body) > 1 or kp:
            sections.append(("run", "What was run", "".join(body)))

        # --- segmentation quality
        body = []
        seg = manifest.get("segmentation") or {}
        demo = manifest.get("demo") or {}
        if seg:
            body.append(_kpis([(k, str(seg[k])) for k in ("method", "seg_mpp", "n_tiles") if seg.get(k) is not None]))
        if demo:
            items = [("true nuclei", f"{demo.get('n_true', 0):,}"), ("detected", f"{demo.get('n_detected', 0):,}")]
            for k in ("precision", "recall", "f1"):
                if demo.get(k) is not None:
                    items.append((f"centroid {k}", f"{demo[k]:.3f}"))
            body.append(_kpis(items))
            body.append(f"<p>Detection scored against the synthetic slide's ground truth: a detected centroid "
                        f"matches a true one within {demo.get('centroid_match_radius_um', '?')} µm.</p>")
        if nuclei is not None and len(nuclei) and s is not None:
            try:
                axes = pl.segmentation_grid(s, nuclei=nuclei, truth=_truth_for(manifest), n_tiles=6, tile_px=192,
                                            seed=0, show=False)
                body.append(_figure(_png(axes), "Six tiles at full resolution: segmented outlines in yellow"
                                    + ("; ground-truth centroids as cyan crosses." if demo else ".")))
            except Exception as exc:  # noqa: BLE001
                logger.warning("report: segmentation grid failed: %s", exc)
        if nuclei is not None and len(nuclei) and K.nuclei.area_um2 in nuclei and nuclei[K.nuclei.area_um2].notna().any():
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(5.5, 2.8))
            ax.hist(nuclei[K.nuclei.area_um2].dropna(), bins=60, color="#4c72b0")
            ax.set_xlabel("nucleus area (µm²)")
            ax.set_ylabel("nuclei")
            body.append(_figure(_png(fig), "Distribution of nucleus areas (implausibly small or large values point "
                                "to over- or under-segmentation)."))
        if body:
            sections.append(("segmentation", "Segmentation quality", "".join(body)))

        # --- slide overlay
        body = []
        if cells is not None and cells.n_obs and K.obsm.spatial in cells.obsm:
            color = next((c for c in (K.obs.cell_type, K.tl.niche) if c in cells.obs), None)
            has_graph = K.obsp.connectivities() in cells.obsp
            try:
                ax = pl.slide_overlay(cells, slide=s, color=color, edges=has_graph and cells.n_obs <= 200_000,
                                      samples=samples if samples is not None and samples.n_obs <= 5000 else None,
                                      show=False, max_size=1100)
                body.append(_figure(_png(ax), "Whole slide: nuclei centroids, cell graph edges and sample boxes."))
                xy = np.asarray(cells.obsm[K.obsm.spatial])
                c = np.median(xy, axis=0)
                i = int(np.argmin(((xy - c) ** 2).sum(1)))
                cx, cy = xy[i]
                half = 160
                region = (cx - half, cy - half, cx + half, cy + half)
                ax = pl.slide_overlay(cells, slide=s, nuclei=nuclei, color=color, region=region, edges=has_graph,
                                      samples=samples if samples is not None and samples.n_obs <= 5000 else None,
                                      show=False, max_size=2 * half)
                body.append(_figure(_png(ax), "A 320 × 320 px region at full resolution: nucleus outlines and the "
                                    "graph edges between them."))
            except Exception as exc:  # noqa: BLE001
                logger.warning("report: slide overlay failed: %s", exc)
        if body:
            sections.append(("overlay", "Slide overlay", "".join(body)))

        # --- representations
        body = []
        if samples is not None and samples.n_obs:
            reps = [k for k in samples.obsm.keys() if str(k).startswith("X_")]
            info = samples.uns.get("representations", {}) or {}
            rows = []
            for r in reps:
                X = np.asarray(samples.obsm[r])
                meta = info.get(r, {})
                rows.append({"representation": r, "dims": int(X.shape[1]) if X.ndim == 2 else 0,
                             "rows with NaN": int((~np.isfinite(X).all(axis=1)).sum()) if X.ndim == 2 else 0,
                             "family": meta.get("family", "structural" if r == K.obsm.structural else ""),
                             "trained": meta.get("trained", ""), "objective": meta.get("objective", "") or ""})
            if rows:
                body.append(f"<p>{samples.n_obs:,} samples ({html.escape(str(samples.obs.get(K.obs.sample_kind, pd.Series(['?'])).iloc[0]))}"
                            f" kind) carry {len(rows)} representation(s).</p>" + _table(pd.DataFrame(rows)))
                r0 = K.obsm.structural if K.obsm.structural in reps else reps[0]
                X = np.asarray(samples.obsm[r0], dtype=float)
                ok = np.isfinite(X).all(axis=1)
                if ok.sum() >= 3 and X.shape[1] >= 2:
                    Z = X[ok]
                    sd = Z.std(0)
                    Z = (Z - Z.mean(0)) / np.where(sd > 0, sd, 1)
                    U, S, _ = np.linalg.svd(Z, full_matrices=False)
                    pcs = U[:, :2] * S[:2]
                    sub = samples[ok].copy()
                    sub.obsm["X_PC"] = pcs
                    color = next((c for c in (K.obs.label, K.obs.batch, K.obs.slide, K.obs.n_cells) if c in sub.obs
                                  and sub.obs[c].nunique() > 1), None)
                    var = S[:2] ** 2 / (S ** 2).sum()
                    ax = pl.embedding(sub, basis="X_PC", color=color, show=False,
                                      title=f"{_short(r0)}: first two principal components "
                                            f"({var[0]:.0%}, {var[1]:.0%} of variance)")
                    body.append(_figure(_png(ax), f"PCA of the standardised {r0} ({ok.sum():,} samples)"
                                        + (f", coloured by {color}." if color else ".")))
        if body:
            sections.append(("representations", "Representations", "".join(body)))

        # --- results
        body = []
        res = samples.uns.get(eval_key) if samples is not None else None
        if res is not None:
            summary = pd.DataFrame(res.get("summary")) if res.get("summary") is not None else None
            gaps = pd.DataFrame(res.get("gaps")) if res.get("gaps") is not None else None
            if gaps is not None and len(gaps):
                lines = read_gaps_in_words(gaps, representations=samples.uns.get("representations", {}) or {})
                body.append("<h3>Reading of the baseline gaps</h3><ul class=\"reading\">" +
                            "".join(f"<li>{x}</li>" for x in lines) + "</ul>")
            if summary is not None and len(summary):
                body.append("<h3>Scores</h3>" + _table(summary))
                for metric in list(pd.unique(summary["metric"]))[:3]:
                    try:
                        ax = pl.eval_scores(samples, key=eval_key, metric=metric, show=False)
                        body.append(_figure(_png(ax), f"{metric}: mean and 95 % bootstrap interval per representation."))
                    except Exception as exc:  # noqa: BLE001
                        logger.warning("report: score plot failed: %s", exc)
            if gaps is not None and len(gaps):
                for ref in pd.unique(gaps["reference"]):
                    for metric in list(pd.unique(gaps.loc[gaps["reference"] == ref, "metric"]))[:2]:
                        try:
                            ax = pl.baseline_gaps(samples, key=eval_key, reference=ref, metric=metric, show=False)
                            body.append(_figure(_png(ax), f"Difference to {_short(ref)} in {metric}, 95 % interval; "
                                                "green = better, grey = not distinguishable, red = worse."))
                        except Exception as exc:  # noqa: BLE001
                            logger.warning("report: gap plot failed: %s", exc)
            if res.get("cka") is not None and len(pd.DataFrame(res["cka"])) > 1:
                ax = pl.cka_heatmap(samples, key=eval_key, show=False)
                body.append(_figure(_png(ax), "Linear CKA: how similar the representations are (1 = the same up to "
                                    "rotation and scale)."))
        if body:
            sections.append(("results", "Results", "".join(body)))

        # --- diagnostics
        body = []
        if res is not None:
            fl = res.get("flags")  # a list, or an array once stored in / read from .h5ad
            flags = [] if fl is None else [str(f) for f in np.atleast_1d(fl)]
            if flags:
                body.append('<div class="note"><b>Flags raised by the evaluation</b><ul>' +
                            "".join(f"<li>{html.escape(str(f))}</li>" for f in flags) + "</ul></div>")
            probes = res.get("probes")
            if probes is not None and len(pd.DataFrame(probes)):
                probes = pd.DataFrame(probes)
                body.append("<h3>Probes</h3><p>How well each representation predicts nuisance variables "
                            "(<i>shortcut</i>: slide, batch, stain — high is a warning) and biology "
                            "(<i>biological</i>).</p>" + _table(probes))
        if samples is not None:
            empty = int((samples.obs[K.obs.n_cells] == 0).sum()) if K.obs.n_cells in samples.obs else 0
            if empty:
                body.append(f"<p>{empty:,} samples contain no cells; their representations are NaN and the "
                            "evaluation leaves them out.</p>")
        if cells is not None and cells.n_obs and K.obsp.connectivities() in cells.obsp:
            deg = np.diff(cells.obsp[K.obsp.connectivities()].tocsr().indptr)
            body.append(f"<p>Cell graph: {int(deg.sum()):,} stored edges; neighbours per cell median {np.median(deg):.0f} "
                        f"(1st–99th percentile {np.percentile(deg, 1):.0f}–{np.percentile(deg, 99):.0f}); "
                        f"{int((deg == 0).sum()):,} isolated cells.</p>")
        if body:
            sections.append(("diagnostics", "Diagnostics", "".join(body)))

        from ._version import __version__

        title = title or f"tissuegraph report — {slide_id}"
        nav = "".join(f'<a href="#{sid}">{html.escape(t)}</a>' for sid, t, _ in sections)
        page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{_CSS}</style></head><body><header><h1>{html.escape(title)}</h1>"
                f"<p>tissuegraph {html.escape(__version__)} · {html.escape(str(manifest.get('created', '')))} · "
                f"{html.escape(str(out.resolve()))}</p></header><nav>{nav}</nav><main>"
                + "".join(_section(*x) for x in sections)
                + "</main></body></html>")
        path = out / filename
        path.write_text(page, encoding="utf-8")
    return path
