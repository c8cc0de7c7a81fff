"""BBBC021 per-well CellProfiler profiles: NSC / NSCB of tissuegraph's profile pipeline, chosen label-free.

Data: ``../shared/data/bbbc021_profiles`` (Ljosa et al. 2013 per-well mean features, 632 wells: 302 wells of
103 treatments = compound x concentration with a known mechanism, 330 DMSO wells; 10 batches = weeks).

Every pipeline is ``tg.culture`` operations followed by ``tg.eval`` metrics:

1. ``normalize`` per plate against the DMSO wells (``standardize`` = z-score, or ``mad_robustize``);
2. ``select_features`` (missing values, variance), then optionally ``select_reproducible`` (features whose
   replicate wells agree: ICC > 0.2, label-free) and/or the correlation filter (0.9);
3. optionally ``rank_transform`` (rank-based inverse-normal per feature, pooled);
4. optionally one operation fitted on the DMSO wells only: ``spherize`` ZCA (eps 0.1, 0.3 or 1.0 of the largest
   singular value) or PCA (TVN, eps 0.1), ``coral`` (per-batch DMSO covariance aligned to the pooled DMSO), or
   ``factor_analysis`` (50 factors fitted on DMSO);
5. optionally the rank-based inverse-normal transform again after that alignment, and optionally, last, every
   feature weighted by its replicate ICC (``weight_reproducible``);
6. ``consensus``: treatment profiles = median of the treatment's wells (means were worse in the first grid);
7. a similarity (cosine, Pearson correlation, Spearman) and 1-NN: NSC (other compounds) and NSCB (other
   compounds and other batches; queries whose mechanism has no candidate left are not scored - 92 of 103).

**Choice without mechanism labels.**  The pipeline reported as "chosen" maximises a label-free score fixed
before this grid ran (v2): ``compound mAP - DMSO batch mAP``.  Compound mAP: on the treatment profiles NSC
uses, each treatment retrieves the same compound's other concentrations among all other treatments (mean
average precision; compound identity in place of the mechanism).  DMSO batch mAP: DMSO wells retrieving the
DMSO wells of their batch (batch information left in the profiles; lower is better).  The earlier grids'
criterion (v1: replicate mAP - DMSO batch mAP, replicate = same compound and concentration) is reported too.
Both use only compound, concentration, plate and batch identities.  Mechanisms are read only to score the
pipelines, and every pipeline's NSC/NSCB is written out, so the gap between the chosen and the
best-in-hindsight pipeline is visible.  A held-out check splits the compounds in two seeded halves, chooses on
one half's queries and scores NSC/NSCB on the other's.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_bbbc021.py --out benchmarks/results/bbbc021.json

or in parts side by side (``--part 0/3``, ``--part 1/3``, ``--part 2/3``, then ``--merge 3``).

Writes the JSON file, a CSV of every pipeline (same name, ``.csv``) and a markdown summary (``.md``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import tissuegraph as tg
from tissuegraph.culture._bench import _profile_pipeline
from tissuegraph.eval._profiling import nn_accuracy, nsc, nscb
from tissuegraph.eval._retrieval import average_precision

# mad_robustize was never better than standardize in the first grid (96 pipelines): this grid keeps the z-score
NORMS = ("standardize",)
# feature selection after normalising: none, pycytominer's correlation filter, replicate reproducibility
# (tg.culture.select_reproducible: ICC(1) of each feature across the replicate wells of a compound x
# concentration > 0.2; label-free), or both
SELECT = ("none", "corr 0.9", "icc 0.2", "icc 0.2 + corr 0.9")
# per-feature rank-based inverse-normal transform of every well (pooled over plates, after the per-plate
# z-score), or none
TRANSFORM = ("none", "inverse_normal")
# what is fitted on the DMSO wells to remove typical / batch variation (all use DMSO only, never treatments):
# ZCA whitening on all DMSO wells (eps relative to the largest singular value; pycytominer's spherize; three
# strengths), TVN (PCA whitening on all DMSO wells, Ando et al. 2017), CORAL (each batch's DMSO covariance
# aligned to the pooled DMSO covariance), factor analysis (50 factors fitted on the DMSO wells, Ljosa et al.
# 2013).  Per-batch whitening was tried in the first grid and dropped for a label-free reason: a separate
# rotation per batch zeroes the DMSO batch mAP by construction while making batches incomparable.
ALIGN = ("none", "ZCA eps 0.1", "ZCA eps 0.3", "ZCA eps 1.0", "TVN eps 0.1", "CORAL eps 0.3", "FA 50 on DMSO")
# third grid: the rank-based inverse-normal transform again after the alignment (whitened / aligned features
# made Gaussian per feature); only where something was fitted on DMSO (otherwise it repeats TRANSFORM)
POST = ("none", "inverse_normal")
# third grid: last, every feature weighted by its replicate ICC (tg.culture.weight_reproducible, label-free), or not
WEIGHT = ("none", "icc 1")
AGGS = ("median",)
METRICS = ("cosine", "correlation", "spearman")
#: the compounds are split in two halves by this seed for the held-out check of the label-free choice
SPLIT_SEED = 0


def grid():
    out = []
    for norm, select, transform, align, post, weight in itertools.product(NORMS, SELECT, TRANSFORM, ALIGN, POST,
                                                                          WEIGHT):
        if align == "none" and post != "none":
            continue
        out.append((norm, select, transform, align, post, weight))
    return out


def prepare(wells, norm, select, transform, align, post="none", weight="none"):
    a = wells.copy()
    # the culture bench's own pipeline code (tissuegraph culture bench runs the chosen one)
    _profile_pipeline(a, normalize=norm, select=select, transform=transform, align=align, post=post, weight=weight)
    return a


def halves(compounds) -> tuple[set, set]:
    """The compounds split in two halves by a seeded permutation (no mechanism involved)."""
    u = np.array(sorted(set(map(str, compounds))))
    perm = np.random.default_rng(SPLIT_SEED).permutation(u.size)
    return set(u[perm[: u.size // 2]]), set(u[perm[u.size // 2:]])


def label_free(a, metric, t, half_a):
    """Label-free criteria (compound, concentration, batch identities only; never a mechanism).

    replicate mAP: wells retrieving their replicate wells (same compound and concentration) among treated wells.
    DMSO batch mAP: DMSO wells retrieving the DMSO wells of their batch (batch information left; lower is better).
    compound mAP: treatment profiles ``t`` (as NSC uses) retrieving the same compound's other concentrations
    among all other treatments; queries = treatments whose compound has two or more concentrations.
    Each also over the queries of compound half A and half B (held-out check)."""
    X = a.obsm["X_profile"].astype(float)
    ctrl = a.obs["is_control"].to_numpy()
    comp_w = a.obs["compound"].astype(str).to_numpy()
    treat = comp_w + "@" + a.obs["concentration"].astype(str).to_numpy()
    ap_rep = average_precision(X[~ctrl], treat[~ctrl], metric=metric)
    bat = np.nanmean(average_precision(X[ctrl], a.obs["batch"].to_numpy()[ctrl], metric=metric))
    T = t.obsm["X_profile"].astype(float)
    comp_t = t.obs["compound"].astype(str).to_numpy()
    ap_cmp = average_precision(T, comp_t, metric=metric)
    in_a_w = np.isin(comp_w[~ctrl], list(half_a))
    in_a_t = np.isin(comp_t, list(half_a))
    # 1-NN form of the compound criterion (does the nearest other treatment belong to the same compound?)
    cmp_nn = nn_accuracy(T, comp_t, metric=metric)
    # the same retrieval within each batch: candidates = the other treatments of the query's batch, which sit on
    # the same plates as the query's own compound (every compound's concentrations share its batch's plates), so
    # plate / batch residue cannot make a compound's treatments look alike
    bt = t.obs["batch"].astype(str).to_numpy()
    ap_wb = np.full(len(T), np.nan)
    for b in np.unique(bt):
        m = bt == b
        if m.sum() > 1:
            ap_wb[m] = average_precision(T[m], comp_t[m], metric=metric)
    return {"replicate_mAP": float(np.nanmean(ap_rep)), "dmso_batch_mAP": float(bat),
            "compound_mAP": float(np.nanmean(ap_cmp)), "compound_1nn": float(cmp_nn),
            "replicate_mAP_A": float(np.nanmean(ap_rep[in_a_w])), "replicate_mAP_B": float(np.nanmean(ap_rep[~in_a_w])),
            "compound_mAP_A": float(np.nanmean(ap_cmp[in_a_t])), "compound_mAP_B": float(np.nanmean(ap_cmp[~in_a_t])),
            "batch_compound_mAP": float(np.nanmean(ap_wb)), "batch_compound_mAP_A": float(np.nanmean(ap_wb[in_a_t])),
            "batch_compound_mAP_B": float(np.nanmean(ap_wb[~in_a_t]))}


def consensus_profiles(a, agg):
    return tg.culture.consensus(a, by=["compound", "concentration"], method=agg, rows="~is_control")


def evaluate(t, metric, half_a):
    X = t.obsm["X_profile"].astype(float)
    acc, tab = nsc(X, t.obs["moa"], compound=t.obs["compound"], metric=metric, return_predictions=True)
    accb, tabb = nscb(X, t.obs["moa"], compound=t.obs["compound"], batch=t.obs["batch"], metric=metric,
                      return_predictions=True)
    in_a = np.isin(t.obs["compound"].astype(str).to_numpy(), list(half_a))
    out = {"NSC": acc, "NSCB": accb, "nsc_scored": int(tab["scored"].sum()), "nscb_scored": int(tabb["scored"].sum()),
           "treatments": t.n_obs}
    for name, tb in (("NSC", tab), ("NSCB", tabb)):
        for h, m in (("A", in_a), ("B", ~in_a)):
            sc = tb["scored"].to_numpy() & m
            out[f"{name}_{h}"] = float(tb["correct"].to_numpy()[sc].mean())
    return out


#: the label-free criteria: "v3" (this grid's choice, defined after v2 failed and before this run), "v2" (fixed
#: before the first run of this grid; failed: compound identity is confounded with plates) and "v1" (earlier grids')
CRITERIA = {"v3": ("batch_compound_mAP", "within-batch compound mAP - DMSO batch mAP"),
            "v2": ("compound_mAP", "compound mAP - DMSO batch mAP"),
            "v1": ("replicate_mAP", "replicate mAP - DMSO batch mAP")}


def add_scores(df):
    for k, (col, _) in CRITERIA.items():
        df[f"score_{k}"] = df[col] - df["dmso_batch_mAP"]
        for h in "AB":
            df[f"score_{k}_{h}"] = df[f"{col}_{h}"] - df["dmso_batch_mAP"]
    return df


def choose(df, crit, half=None):
    col = f"score_{crit}" + (f"_{half}" if half else "")
    tie = CRITERIA[crit][0] + (f"_{half}" if half else "")
    return df.sort_values([col, tie, "replicate_mAP"], ascending=False).iloc[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="folder of the BBBC021 profiles (default ../shared/data/...)")
    p.add_argument("--out", default="benchmarks/results/bbbc021.json")
    p.add_argument("--part", default=None, help="K/N: run only every N-th pipeline from the K-th and write "
                   "OUT.partK.csv (run N parts side by side, then --merge N)")
    p.add_argument("--merge", type=int, default=0, help="read OUT.part0..N-1.csv and write the report")
    a = p.parse_args(argv)
    tg.settings.progress = False
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    root = Path(a.data) if a.data else Path(os.environ.get("TISSUEGRAPH_SHARED_DATA",
                                                            Path(__file__).resolve().parents[2] / "shared" / "data")) / "bbbc021_profiles"
    t0 = time.perf_counter()
    wells = tg.culture.read_bbbc021_profiles(root)
    out = Path(a.out)
    if a.merge:
        parts = [pd.read_csv(out.with_suffix(f".part{k}.csv")) for k in range(a.merge)]
        df = pd.concat(parts, ignore_index=True)
        df["seconds"] = df.pop("seconds").max() if "seconds" in df else 0.0
        df = df.fillna({"select": "none", "transform": "none", "align": "none", "post": "none", "weight": "none"})
        report(add_scores(df), a, t0 - float(df.seconds.max()), wells)
        return
    rows = []
    half_a, _ = halves(wells.obs.loc[~wells.obs["is_control"], "compound"])
    k, n_parts = (int(v) for v in a.part.split("/")) if a.part else (0, 1)
    for norm, select, transform, align, post, weight in grid()[k::n_parts]:
        prep = prepare(wells, norm, select, transform, align, post, weight)
        for agg in AGGS:
            t = consensus_profiles(prep, agg)
            for metric in METRICS:
                rows.append({"normalize": norm, "select": select, "transform": transform, "align": align,
                             "post": post, "weight": weight, "consensus": agg, "similarity": metric,
                             "n_features": prep.obsm["X_profile"].shape[1],
                             **label_free(prep, metric, t, half_a), **evaluate(t, metric, half_a)})
        print(len(rows), {c: rows[-1][c] for c in (*COLS, "compound_mAP", "NSC", "NSCB")}, flush=True)
    df = pd.DataFrame(rows)
    if a.part:
        df["seconds"] = time.perf_counter() - t0
        df.to_csv(out.with_suffix(f".part{k}.csv"), index=False)
        return
    report(add_scores(df), a, t0, wells)


COLS = ("normalize", "select", "transform", "align", "post", "weight", "consensus", "similarity")


def _find(df, spec):
    m = np.ones(len(df), dtype=bool)
    for c in COLS:
        m &= (df[c] == spec.get(c, "none")).to_numpy()
    if not m.any():
        return None
    return df[m].iloc[0]


def kendall_nn(wells, spec):
    """NSC / NSCB of one pipeline with Kendall's tau as the similarity (scipy; not in tg.eval's kernels)."""
    from scipy.stats import kendalltau

    prep = prepare(wells, spec["normalize"], spec["select"], spec["transform"], spec["align"], spec["post"],
                   spec["weight"])
    t = consensus_profiles(prep, spec["consensus"])
    Y = t.obsm["X_profile"].astype(float)
    n = len(Y)
    S = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            S[i, j] = S[j, i] = kendalltau(Y[i], Y[j]).statistic
    comp, bat, moa = (t.obs[c].astype(str).to_numpy() for c in ("compound", "batch", "moa"))
    out = []
    for across_batches in (False, True):
        ok = comp[:, None] != comp[None, :]
        if across_batches:
            ok &= bat[:, None] != bat[None, :]
        nn = np.where(ok, S, -np.inf).argmax(axis=1)
        scored = (ok & (moa[:, None] == moa[None, :])).any(axis=1)
        out.append(float((moa[nn] == moa)[scored].mean()))
    return out


def _name(r):
    parts = [r["select"] if r["select"] != "none" else "all features"]
    if r["transform"] != "none":
        parts.append(r["transform"].replace("_", "-"))
    if r["align"] != "none":
        parts.append(r["align"].replace(" on DMSO", "") + " on DMSO")
    if r["post"] != "none":
        parts.append("then " + r["post"].replace("_", "-"))
    if r["weight"] != "none":
        parts.append("ICC-weighted")
    return ", ".join(parts) + f", {r['similarity']}"


def report(df, a, t0, wells):
    chosen = choose(df, "v3")
    chosen_v2 = choose(df, "v2")
    chosen_v1 = choose(df, "v1")
    ref = _find(df, {"normalize": "standardize", "consensus": "median", "similarity": "cosine"})
    prev = _find(df, {"normalize": "standardize", "select": "corr 0.9", "consensus": "median",
                      "similarity": "spearman"})  # the first grid's chosen pipeline
    prev2 = _find(df, {"normalize": "standardize", "select": "icc 0.2 + corr 0.9", "transform": "inverse_normal",
                       "align": "CORAL eps 0.3", "consensus": "median", "similarity": "correlation"})  # second grid's
    # one-step-at-a-time path from the reference to the chosen pipeline (what each step adds)
    def steps_to(target):
        path = []
        cur = ref.to_dict()
        for col in ("similarity", "normalize", "select", "transform", "align", "post", "weight"):
            if cur[col] == target[col]:
                continue
            cur[col] = target[col]
            r = _find(df, cur)
            path.append({"step": f"{col} -> {target[col]}", "NSC": float(r.NSC), "NSCB": float(r.NSCB),
                         "score_v3": float(r.score_v3), "score_v2": float(r.score_v2),
                         "score_v1": float(r.score_v1)})
        return path

    path = steps_to(chosen)
    # every single operation swapped into the chosen pipeline
    swaps = []
    for col, opts in (("select", SELECT), ("transform", TRANSFORM), ("align", ALIGN), ("post", POST),
                      ("weight", WEIGHT), ("similarity", METRICS)):
        for o in opts:
            spec = chosen.to_dict()
            spec[col] = o
            r = _find(df, spec)
            if r is None:
                continue
            swaps.append({"change": f"{col} = {o}" + (" (chosen)" if o == chosen[col] else ""),
                          "NSC": float(r.NSC), "NSCB": float(r.NSCB),
                          "replicate_mAP": float(r.replicate_mAP), "compound_mAP": float(r.compound_mAP),
                          "batch_compound_mAP": float(r.batch_compound_mAP),
                          "dmso_batch_mAP": float(r.dmso_batch_mAP), "score_v3": float(r.score_v3)})
    # held-out check: choose on one half of the compounds (criterion over its queries), score NSC / NSCB on the
    # other half's queries; against the best pipeline on that half in hindsight and the median pipeline
    held = []
    for crit in ("v3", "v2", "v1"):
        for h_fit, h_eval in (("A", "B"), ("B", "A")):
            c = choose(df, crit, h_fit)
            held.append({"criterion": crit, "chosen on": h_fit, "scored on": h_eval, "pipeline": _name(c),
                         "NSC": float(c[f"NSC_{h_eval}"]), "NSCB": float(c[f"NSCB_{h_eval}"]),
                         "best NSC": float(df[f"NSC_{h_eval}"].max()), "best NSCB": float(df[f"NSCB_{h_eval}"].max()),
                         "median NSC": float(df[f"NSC_{h_eval}"].median()),
                         "median NSCB": float(df[f"NSCB_{h_eval}"].median()),
                         "same as full choice": bool(all(c[k] == choose(df, crit)[k] for k in COLS))})
    k_chosen = kendall_nn(wells, chosen.to_dict())
    best_nsc = df.sort_values(["NSC", "NSCB"], ascending=False).iloc[0]
    best_nscb = df.sort_values(["NSCB", "NSC"], ascending=False).iloc[0]
    both = df[(df.NSC >= 0.95) & (df.NSCB >= 0.80)]
    over = df[df.NSCB >= 0.80].sort_values(["NSC", "NSCB"], ascending=False)
    ha, hb = halves(wells.obs.loc[~wells.obs["is_control"], "compound"])
    rc = {f"{crit}_vs_{m}": float(df[[f"score_{crit}", m]].corr("spearman").iloc[0, 1])
          for crit in CRITERIA for m in ("NSC", "NSCB")}
    rc.update({f"{col}_vs_{m}": float(df[[col, m]].corr("spearman").iloc[0, 1])
               for col in ("batch_compound_mAP", "compound_mAP", "compound_1nn", "replicate_mAP", "dmso_batch_mAP")
               for m in ("NSC", "NSCB")})
    path_best = steps_to(over.iloc[0]) if len(over) else []
    # the family of the hindsight best: rank transform, ZCA on DMSO, rank transform again
    fam_df = df[(df["transform"] == "inverse_normal") & (df["post"] == "inverse_normal")
                & df["align"].str.startswith("ZCA")]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    res = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "seconds": time.perf_counter() - t0,
           "load_avg_1min": os.getloadavg()[0], "n_pipelines": len(df), "reference": ref.to_dict(),
           "first_grid_chosen": prev.to_dict(), "second_grid_chosen": prev2.to_dict(), "chosen": chosen.to_dict(),
           "chosen_v2": chosen_v2.to_dict(), "chosen_v1": chosen_v1.to_dict(), "path": path,
           "path_to_best_with_nscb_0.80": path_best, "swaps": swaps, "held_out": held,
           "compound_halves": {"A": sorted(ha), "B": sorted(hb), "seed": SPLIT_SEED},
           "kendall_chosen": k_chosen, "best_in_hindsight_nsc": best_nsc.to_dict(),
           "best_in_hindsight_nscb": best_nscb.to_dict(), "n_pipelines_meeting_both_targets": int(len(both)),
           "best_nsc_with_nscb_0.80": over.iloc[0].to_dict() if len(over) else None, "rank_correlations": rc}
    out.write_text(json.dumps(res, indent=2, default=str))

    def line(name, r):
        return (f"| {name} | {_name(r)} | {r['replicate_mAP']:.3f} | {r['compound_mAP']:.3f} "
                f"| {r['batch_compound_mAP']:.3f} | {r['dmso_batch_mAP']:.3f} | {r['score_v3']:.3f} "
                f"| {r['score_v2']:.3f} | {r['score_v1']:.3f} | {r['NSC']:.3f} | {r['NSCB']:.3f} |")
    head = ["| pipeline | per-plate DMSO z-score, then | replicate mAP | compound mAP | within-batch compound mAP "
            "| DMSO batch mAP | score v3 | score v2 | score v1 | NSC | NSCB |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    md = [f"# BBBC021 per-well profiles: NSC / NSCB ({len(df)} pipelines)", "",
          f"Command: `{res['command']}`"
          + (f" after `--part K/{a.merge}` for K = 0..{a.merge - 1} side by side at nice 19" if a.merge else "")
          + f" ({res['seconds']:.0f} s, load average {res['load_avg_1min']:.1f}; accuracy only, not a timing).  "
          "Exploration runs before this grid (NSC seen): `bbbc021_exploration.md`.", "",
          f"Treatments: {int(chosen.treatments)} (NSC scores all {int(chosen.nsc_scored)}; NSCB scores "
          f"{int(chosen.nscb_scored)}: the others' mechanism has no compound in another batch).  Treatment "
          "profile = median of its wells.  Every compound sits in one batch (each treatment's 2-3 replicate wells "
          "are on different plates of that batch), so no label-free quantity spans batches except the DMSO wells.",
          "",
          "**Label-free criteria** (no mechanism labels; compound, concentration and batch identities only):", "",
          "* v2 (written down before this grid first ran): compound mAP - DMSO batch mAP.  Compound mAP: "
          "on the treatment profiles NSC uses, each treatment retrieves the *same compound's other concentrations* "
          "among all other treatments (the query left out; 31 of 38 compounds have two or more concentrations). "
          "It mirrors NSC's setting (treatment-level nearest neighbours, other treatments as candidates) with "
          "compound identity in place of the mechanism.  DMSO batch mAP: DMSO wells retrieving the DMSO wells of "
          "their own batch (batch information left in the profiles; lower is better).  **v2 failed** (its choice "
          f"below has NSC {chosen_v2.NSC:.3f}).  A first guess - every compound's concentrations sit on the same "
          "three plates, so compound retrieval among all treatments is partly plate retrieval - led to v3, which "
          "rules the plates out and fails the same way (see the conclusion).",
          "* **v3 (the choice reported as chosen): within-batch compound mAP - DMSO batch mAP.**  The same "
          "retrieval with candidates restricted to the query's own batch (the same plates as the query's compound), "
          "so that plate residue cannot make a compound's treatments alike.  Defined after v2's grid had been "
          "seen (NSC included) and before this run; so it is not a clean pre-registration - the held-out check "
          "below is the safeguard for the pipeline choice, not for the criterion's design.",
          "* v1 (the earlier grids' criterion): replicate mAP (wells retrieving the other wells of the same "
          "compound and concentration) - DMSO batch mAP.", "",
          *head, line("reference", ref), line("first grid's choice (v1)", prev),
          line("second grid's choice (v1)", prev2), line("v1 on this grid", chosen_v1),
          line("v2 on this grid (failed)", chosen_v2), line("**chosen (v3, label-free)**", chosen),
          line("best NSC in hindsight", best_nsc), line("best NSCB in hindsight", best_nscb),
          *([line("best NSC with NSCB >= 0.80 (hindsight)", over.iloc[0])] if len(over) else []), "",
          "Spearman rank correlation over all pipelines: "
          + ", ".join(f"{k.replace('_vs_', ' vs ')} {v:.2f}" for k, v in rc.items()) + ".  "
          f"Pipelines meeting both targets (NSC >= 0.95 and NSCB >= 0.80), even in hindsight: {len(both)}.", "",
          "**Held-out check** (compounds split in two halves by a seeded permutation, seed "
          f"{SPLIT_SEED}: A = {len(ha)}, B = {len(hb)} compounds; the criterion is computed over one half's queries, "
          "NSC / NSCB over the other half's queries, candidates = all treatments):", "",
          "| criterion | chosen on | scored on | pipeline | NSC | NSCB | best NSC there | best NSCB there "
          "| median NSC | median NSCB | same as full-data choice |", "|---|---|---|---|---|---|---|---|---|---|---|",
          *[f"| {h['criterion']} | {h['chosen on']} | {h['scored on']} | {h['pipeline']} | {h['NSC']:.3f} | "
            f"{h['NSCB']:.3f} | {h['best NSC']:.3f} | {h['best NSCB']:.3f} | {h['median NSC']:.3f} | "
            f"{h['median NSCB']:.3f} | {h['same as full choice']} |" for h in held], "",
          "One step at a time from the reference to the chosen pipeline:", "",
          "| step | NSC | NSCB | score v3 | score v2 | score v1 |", "|---|---|---|---|---|---|",
          *[f"| {s['step']} | {s['NSC']:.3f} | {s['NSCB']:.3f} | {s['score_v3']:.3f} | {s['score_v2']:.3f} "
            f"| {s['score_v1']:.3f} |" for s in path], "",
          *(["One step at a time from the reference to the best-NSC pipeline with NSCB >= 0.80 (hindsight; "
             "chosen by the mechanism labels, shown only to say what each step adds there):", "",
             "| step | NSC | NSCB | score v3 | score v2 | score v1 |", "|---|---|---|---|---|---|",
             *[f"| {s['step']} | {s['NSC']:.3f} | {s['NSCB']:.3f} | {s['score_v3']:.3f} | {s['score_v2']:.3f} "
               f"| {s['score_v1']:.3f} |" for s in path_best], ""] if path_best else []),
          "Each operation swapped into the chosen pipeline (one at a time):", "",
          "| change | NSC | NSCB | replicate mAP | compound mAP | within-batch compound mAP | DMSO batch mAP "
          "| score v3 |", "|---|---|---|---|---|---|---|---|",
          *[f"| {s['change']} | {s['NSC']:.3f} | {s['NSCB']:.3f} | {s['replicate_mAP']:.3f} | "
            f"{s['compound_mAP']:.3f} | {s['batch_compound_mAP']:.3f} | {s['dmso_batch_mAP']:.3f} | "
            f"{s['score_v3']:.3f} |" for s in swaps], "",
          f"Kendall's tau (scipy) as the similarity of the chosen pipeline: NSC {k_chosen[0]:.3f}, "
          f"NSCB {k_chosen[1]:.3f}.", "",
          "## Conclusion", "",
          f"* **No label-free criterion tried finds a pipeline near the targets on this grid.**  v2 (written down "
          f"before the grid ran) picks NSC {chosen_v2.NSC:.3f} / NSCB {chosen_v2.NSCB:.3f}; v3 {chosen.NSC:.3f} / "
          f"{chosen.NSCB:.3f}; v1 {chosen_v1.NSC:.3f} / {chosen_v1.NSCB:.3f}.  In the held-out check every "
          "criterion's pick scores at or below the median pipeline's NSC on the other half.  Over all pipelines "
          f"v2 and v3 anti-correlate with NSC ({rc['v2_vs_NSC']:.2f}, {rc['v3_vs_NSC']:.2f}) and correlate with NSCB "
          f"({rc['v2_vs_NSCB']:.2f}, {rc['v3_vs_NSCB']:.2f}); v1 the reverse ({rc['v1_vs_NSC']:.2f}, "
          f"{rc['v1_vs_NSCB']:.2f}).",
          "* Why compound identity misleads (the measured part: whitening fitted on DMSO - TVN, ZCA with a small eps - "
          "raises the compound mAP, even within a batch, while lowering NSC; the likely reason, not tested further): "
          "it amplifies directions in which DMSO wells "
          "hardly vary; a compound's concentrations agree there, but different compounds of one mechanism do "
          "not.  Replicate and compound identity reward what is specific to a compound; NSC rewards what its "
          "mechanism shares, and no label-free quantity in this data set measures that.",
          f"* In hindsight, {len(both)} of {len(df)} pipelines meet both targets; the best NSC with NSCB >= 0.80 "
          f"is {_name(over.iloc[0]) if len(over) else 'none'} (NSC {over.iloc[0].NSC if len(over) else np.nan:.3f}, "
          f"NSCB {over.iloc[0].NSCB if len(over) else np.nan:.3f}).  The family of rank transform - ZCA - rank "
          "transform: the "
          f"{len(fam_df)} pipelines with inverse-normal - ZCA - inverse-normal have median NSC "
          f"{fam_df.NSC.median():.3f} and NSCB {fam_df.NSCB.median():.3f} (range "
          f"{fam_df.NSC.min():.3f}-{fam_df.NSC.max():.3f} / "
          f"{fam_df.NSCB.min():.3f}-{fam_df.NSCB.max():.3f}); with 103 and 92 queries one "
          "treatment moves NSC by 0.010 and NSCB by 0.011, so the best of 624 is partly selection luck.",
          "* `tissuegraph culture bench --dataset bbbc021` keeps the second grid's label-free choice (ICC > 0.2 + "
          f"correlation filter, inverse-normal, CORAL eps 0.3, Pearson: NSC {prev2.NSC:.3f}, NSCB {prev2.NSCB:.3f}).  "
          "Keeping it rather than this grid's picks is a decision taken with the NSC figures above in view; it is "
          "stated here, not presented as blind.", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
