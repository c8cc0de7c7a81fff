"""Plain-language markdown summary of ``tg.eval.evaluate`` results (for reports and ``summary.md``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._errors import InputError
from ._protocols import HEADLINE

__all__ = ["summarize"]


def _fmt(v: float, digits: int = 3) -> str:
    return "–" if not np.isfinite(v) else f"{v:.{digits}f}"


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(lines)


def summarize(samples, *, key: str = "tg_eval", digits: int = 3) -> str:
    """A markdown report of ``samples.uns[key]`` (written by :func:`tissuegraph.eval.evaluate`).

    Sections: scores (representations x protocol/metric, mean [95 % interval] over the splits and
    seeds), baseline gaps with verdicts, shortcut / biological probes, and the flags. Only headline
    metrics are shown (per-target Pearson r stays in the results table).
    """
    if key not in samples.uns or "summary" not in samples.uns[key]:
        raise InputError(f"samples.uns[{key!r}] holds no evaluation; run tg.eval.evaluate(samples, ..., "
                         f"key_added={key!r}) first.")
    ev = samples.uns[key]
    summ = pd.DataFrame(ev["summary"])
    params = ev.get("params", {})
    level = params.get("level", 0.95)
    pct = f"{100 * float(level):.0f} %"
    out = [f"## Evaluation ({key})", ""]
    desc = [f"label `{params.get('label_key')}`"]
    if params.get("group_key") not in (None, "None"):
        desc.append(f"grouped by `{params.get('group_key')}`")
    desc.append(f"{params.get('n_splits')} splits x {len(np.atleast_1d(params.get('seeds', [])))} seeds")
    desc.append(f"{params.get('n_samples')} samples")
    out += ["Scores: mean [" + pct + " bootstrap interval] over splits x seeds; " + ", ".join(desc) + ".", ""]

    head = summ[[m in HEADLINE.get(p, ()) for p, m in zip(summ["protocol"], summ["metric"])]]
    if len(head):
        head = head.assign(col=head["protocol"] + " " + head["metric"],
                           cell=[f"{_fmt(m, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"
                                 for m, lo, hi in zip(head["mean"], head["ci_low"], head["ci_high"])])
        order_cols = list(dict.fromkeys(head["col"]))
        order_rows = list(dict.fromkeys(head["representation"]))
        wide = head.pivot(index="representation", columns="col", values="cell").reindex(index=order_rows,
                                                                                      columns=order_cols)
        wide = wide.fillna("–").reset_index()
        out += [_md_table(wide), ""]

    gaps = pd.DataFrame(ev.get("gaps", pd.DataFrame()))
    if len(gaps):
        out += ["### Baseline gaps", "",
                "Difference learned − reference, paired over the same splits and seeds; verdict from whether the "
                f"{pct} interval excludes 0.", ""]
        g = gaps.assign(metric=gaps["protocol"] + " " + gaps["metric"],
                        difference=[f"{_fmt(d, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"
                                    for d, lo, hi in zip(gaps["diff"], gaps["ci_low"], gaps["ci_high"])])
        out += [_md_table(g[["representation", "reference", "metric", "difference", "verdict"]]), ""]
        counts = gaps.groupby(["reference", "verdict"]).size().unstack(fill_value=0)
        lines = []
        for ref, row in counts.iterrows():
            lines.append(f"- vs {ref}: " + ", ".join(f"{int(row.get(v, 0))} {v}" for v in
                                                     ("better", "not distinguishable", "worse")))
        out += ["In short:", *lines, ""]

    probes = pd.DataFrame(ev.get("probes", pd.DataFrame()))
    if len(probes):
        out += ["### Probes", "",
                "Label and shortcut columns: chance-adjusted balanced accuracy (0 = chance); continuous "
                "quantities: cross-validated R².", ""]
        p = probes.assign(col=probes["kind"] + ": " + probes["target"],
                          cell=[_fmt(v, digits) for v in probes["value"].astype(float)])
        cols = list(dict.fromkeys(p["col"]))
        wide = p.pivot_table(index="representation", columns="col", values="cell", aggfunc="first")
        wide = wide.reindex(index=list(dict.fromkeys(p["representation"])), columns=cols).fillna("–").reset_index()
        out += [_md_table(wide), ""]

    flags = [str(f) for f in np.atleast_1d(ev.get("flags", [])) if str(f)]
    out += ["### Flags", ""]
    out += [f"- {f}" for f in flags] if flags else ["- none"]
    out.append("")
    return "\n".join(out)
