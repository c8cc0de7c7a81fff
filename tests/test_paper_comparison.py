"""The gathering code of benchmarks/paper_comparison.py on hand-made finished-set folders (no real data)."""

import json

import pandas as pd
import pytest

from tests.helpers import load_benchmark_script


@pytest.fixture(scope="module")
def pc():
    return load_benchmark_script("paper_comparison")


META = {
    "X_structural": {"family": "structural", "trained": False, "learned": False},
    "X_color": {"family": "color", "trained": False, "learned": False},
    "X_gnn_gin_features_untrained_s0": {"family": "gnn", "trained": False, "learned": True},
    "X_gnn_gin_features_dgi": {"family": "gnn", "trained": True, "learned": True},
}


def _summary_rows(dataset, task, scores):
    """scores: rep -> (linear macro_f1 mean, lo, hi); also a kNN macro-F1 and a linear balanced accuracy row
    (not primary: the table must pick the linear probe's macro-F1) and a retrieval mAP row."""
    rows = []
    for rep, (m, lo, hi) in scores.items():
        rows += [(dataset, task, rep, "linear_probe", "macro_f1", m, lo, hi, 15),
                 (dataset, task, rep, "knn", "macro_f1", m - 0.2, lo - 0.2, hi - 0.2, 15),
                 (dataset, task, rep, "linear_probe", "balanced_accuracy", 0.99, 0.98, 1.0, 15),
                 (dataset, task, rep, "retrieval", "map", 0.1, 0.05, 0.15, 15)]
    return pd.DataFrame(rows, columns=["dataset", "task", "representation", "protocol", "metric", "mean", "ci_low",
                                       "ci_high", "n"])


def _gap_rows(dataset, task, gaps):
    return pd.DataFrame([(dataset, task, *g) for g in gaps],
                        columns=["dataset", "task", "representation", "reference", "protocol", "metric", "diff",
                                 "ci_low", "ci_high", "verdict"])


def _finished(root, name, *, summary, gaps, flags, skipped, timings, eval_timings, seconds, config):
    d = root / name
    d.mkdir(parents=True)
    summary.to_csv(d / "summary.csv", index=False)
    gaps.to_csv(d / "gaps.csv", index=False)
    rec = {"name": name, "config": config, "command": f"python benchmarks/paper_comparison.py --datasets {name}",
           "started": "2026-12-05 00:00:00 UTC", "status": "done", "seconds": seconds, "skipped": skipped,
           "flags": flags, "n_samples": 40, "n_nuclei": 1234, "representations": list(META),
           "representations_meta": META, "timings": timings, "evaluate_timings": eval_timings,
           "load_before": [1.0, 1.0, 1.0], "load_after": [3.5, 3.0, 2.0], "finished": "2026-12-05 00:10:00 UTC"}
    (d / "paper.json").write_text(json.dumps(rec))


def _config(ds, **kw):
    return {"dataset": ds, "skipped_steps": [], "classification_also": ["retrieval", "clustering"], "seeds": [0, 1, 2],
            "segmenter": "auto", "train_epochs": {"gnn": 50, "cnn": 5}, "quick": False, "simclr_max_crops": 256, **kw}


@pytest.fixture()
def outdir(tmp_path):
    root = tmp_path / "runs"
    A = "diagnostic: structure"
    syn_gaps = [("X_gnn_gin_features_untrained_s0", "X_structural", "linear_probe", "macro_f1", 0.10, 0.02, 0.18,
                 "better"),
                ("X_gnn_gin_features_dgi", "X_structural", "linear_probe", "macro_f1", -0.05, -0.12, 0.01,
                 "not distinguishable"),
                ("X_gnn_gin_features_dgi", "untrained twins", "linear_probe", "macro_f1", -0.15, -0.25, -0.05,
                 "worse"),
                # not the primary metric: counted in the every-metric table only
                ("X_gnn_gin_features_dgi", "X_structural", "knn", "macro_f1", -0.30, -0.40, -0.20, "worse"),
                ("X_gnn_gin_features_dgi", "untrained twins", "retrieval", "map", 0.01, -0.02, 0.04,
                 "not distinguishable")]
    _finished(root, "synthetic",
              summary=_summary_rows("diagnostic", A, {"X_structural": (0.5, 0.45, 0.55), "X_color": (0.3, 0.2, 0.4),
                                                      "X_gnn_gin_features_untrained_s0": (0.6, 0.52, 0.68),
                                                      "X_gnn_gin_features_dgi": (0.45, 0.4, 0.5)}),
              gaps=_gap_rows("diagnostic", A, syn_gaps),
              flags=[f"{A}: Metric disagreement: knn balanced_accuracy and retrieval mAP order the representations "
                     "differently (Kendall tau 0.10, 2 of 6 pairs flipped).",
                     f"{A}: X_color predicts 'slide' better than the label 'label' (chance-adjusted balanced accuracy "
                     "0.50 vs 0.10): it encodes a shortcut/confound."],
              skipped={"cnn_ssl": "failed: RuntimeError: out of memory"},
              timings={"bench: segment diagnostic": 60.0, "bench: features": 15.0, "bench: graph (delaunay)": 1.0,
                       "bench: samples": 0.5, "bench: structural descriptors": 0.5,
                       "bench: representation color": 10.0, "bench: representation gnn_untrained": 14.0,
                       "bench: representation gnn_ssl": 30.0, "bench: evaluate diagnostic: structure": 100.0,
                       "bench: evaluate diagnostic: stain": 50.0, "bench: tables and plots": 9.0},
              eval_timings={A: {"linear_probe": 10.0, "leiden": 40.0, "probes": 5.0},
                            "diagnostic: stain": {"linear_probe": 2.0, "leiden": 20.0}},
              seconds=300.0, config=_config({"factor": "all", "n_samples_per_factor": 10}))
    B = "kather2016: tissue class"
    _finished(root, "kather2016",
              summary=_summary_rows("kather2016", B, {"X_structural": (0.40, 0.35, 0.45),
                                                      "X_gnn_gin_features_dgi": (0.70, 0.65, 0.75)}),
              gaps=_gap_rows("kather2016", B, [("X_gnn_gin_features_dgi", "X_structural", "linear_probe", "macro_f1",
                                                0.30, 0.25, 0.35, "better")]),
              flags=[], skipped={}, timings={"bench: segment kather2016": 20.0, "bench: evaluate kather2016": 40.0},
              eval_timings={}, seconds=100.0, config=_config({"limit_per_class": 20}))
    (root / "her2st").mkdir()
    (root / "her2st" / "paper.json").write_text(json.dumps({
        "name": "her2st", "config": _config({"section": "B4"}), "command": "x",
        "status": "skipped: her2st: no such folder /data/her2st; set TISSUEGRAPH_SHARED_DATA"}))
    return root


def test_gather_tables(pc, outdir, tmp_path):
    names = ["synthetic", "kather2016", "crchisto", "her2st"]
    stem = tmp_path / "res" / "paper"
    text = pc.gather(outdir, names, command="CMD", write=stem)
    lines = text.splitlines()

    # configuration rows: a set without paper.json is "not run", a set whose data are missing is "skipped"
    assert "| crchisto | not run (no crchisto/paper.json" in text
    assert "| her2st | skipped: her2st: no such folder" in text
    syn = next(ln for ln in lines if ln.startswith("| synthetic | done"))
    cells = [c.strip() for c in syn.strip("|").split("|")]
    assert cells[2:4] == ["40", "1234"]
    assert "SimCLR trained on at most 256 crops" in cells[4] and '"n_samples_per_factor": 10' in cells[4]
    assert cells[5] == "[0, 1, 2]" and cells[6] == "15" and cells[7] == "GNN (DGI) 50, CNN (SimCLR) 5"
    assert cells[8] == "300" and cells[10] == "1.0 / 3.5"
    # the failed step is reported, not hidden
    assert "Steps skipped or failed: synthetic: cnn_ssl (failed: RuntimeError: out of memory)." in text

    # step wall times: graph + samples + descriptors summed (1 + 0.5 + 0.5 = 2), evaluate over both tasks
    # (100 + 50 = 150), steps that did not run blank, other = 300 - (60+15+2+10+14+30+150+9) = 10
    t = next(ln for ln in lines if ln.startswith("| synthetic | 60 |"))
    assert [c.strip() for c in t.strip("|").split("|")] == [
        "synthetic", "60", "15", "2", "10", "14", "", "30", "", "150", "9", "10", "300"]
    k = next(ln for ln in lines if ln.startswith("| kather2016 | 20 |"))
    assert [c.strip() for c in k.strip("|").split("|")] == [
        "kather2016", "20", "", "", "", "", "", "", "", "40", "", "40", "100"]
    # inside evaluate, summed over the two tasks: linear probe 10 + 2, Leiden 40 + 20, probes 5
    e = next(ln for ln in lines if ln.startswith("| synthetic | 12 |"))
    ecells = [c.strip() for c in e.strip("|").split("|")]
    cols = ["set", *pc.EVAL_COLUMNS]
    assert ecells[cols.index("leiden")] == "60" and ecells[cols.index("probes")] == "5"
    assert ecells[cols.index("knn")] == ""

    # scores: the primary metric (linear probe macro-F1), one column per task, reps ordered structural first
    head = next(ln for ln in lines if ln.startswith("| representation | family | trained |"))
    assert "diagnostic: structure (linear_probe, macro_f1)" in head and "kather2016: tissue class (linear_probe, " \
                                                                        "macro_f1)" in head
    i0 = lines.index(head)
    i1 = next(j for j in range(i0 + 2, len(lines)) if not lines[j].startswith("| "))
    row = {ln.split(" | ")[0].strip("| "): ln for ln in lines[i0 + 2:i1]}
    r = [c.strip() for c in row["X_structural"].strip("|").split("|")]
    assert r[1:] == ["structural", "False", "0.500 [0.450, 0.550]", "0.400 [0.350, 0.450]"]
    r = [c.strip() for c in row["X_color"].strip("|").split("|")]
    assert r[3:] == ["0.300 [0.200, 0.400]", ""]  # not evaluated on kather2016
    order = [ln.split(" | ")[0].strip("| ") for ln in lines[lines.index(head) + 2:] if ln.startswith("| X_")][:4]
    assert order == ["X_structural", "X_color", "X_gnn_gin_features_untrained_s0", "X_gnn_gin_features_dgi"]

    # claims per task, from the primary-metric gaps only
    claim = next(ln for ln in lines if ln.startswith("- **diagnostic: structure**"))
    assert "best X_gnn_gin_features_untrained_s0 0.600; X_structural 0.500; X_color 0.300" in claim
    assert "vs X_structural: better 1, not distinguishable 1; trained networks: X_gnn_gin_features_dgi: not " \
           "distinguishable (-0.050 [-0.120, +0.010])" in claim
    assert "vs untrained twins: worse 1; trained networks: X_gnn_gin_features_dgi: worse (-0.150 [-0.250, -0.050])" \
        in claim
    assert "metric disagreement flags: 1; shortcut/confound flags: 1" in claim
    claim_k = next(ln for ln in lines if ln.startswith("- **kather2016: tissue class**"))
    assert "vs X_structural: better 1" in claim_k and "untrained twins" not in claim_k
    assert "metric disagreement flags: 0; shortcut/confound flags: 0" in claim_k

    # verdict counts over every metric and task (synthetic 5 gaps + kather 1):
    # X_structural: better 2 (syn untrained, kather dgi), not distinguishable 1, worse 1 (knn);
    # untrained twins: not distinguishable 1 (retrieval), worse 1
    i = lines.index("## Baseline gaps: verdict counts over every metric and task")
    tab = [ln for ln in lines[i + 2:i + 6] if ln.startswith("| ")]
    assert tab[0] == "| reference | better | not distinguishable | worse |"
    assert tab[1] == "| X_structural | 2 | 1 | 1 |"
    assert tab[2] == "| untrained twins | 0 | 1 | 1 |"
    # the primary-metric gap table has the 3 primary synthetic gaps and the kather one, not the knn/retrieval ones
    assert sum(ln.startswith("| diagnostic: structure | X_gnn") for ln in lines) == 3
    assert "| kather2016: tissue class | X_gnn_gin_features_dgi | X_structural | 0.300 [0.250, 0.350] | better |" in text

    # flags are prefixed with their set
    assert "- synthetic: diagnostic: structure: X_color predicts 'slide' better than the label" in text

    # files: the summary of both finished sets, the records (incl. the not-run one) in the JSON
    csv = pd.read_csv(stem.with_suffix(".csv"))
    assert len(csv) == 4 * 4 + 2 * 4 and set(csv["dataset"]) == {"diagnostic", "kather2016"}
    js = json.loads(stem.with_suffix(".json").read_text())
    assert js["records"]["crchisto"]["status"].startswith("not run") and len(js["gaps"]) == 6
    assert stem.with_suffix(".md").read_text() == text


def test_gather_nothing_finished(pc, tmp_path):
    text = pc.gather(tmp_path / "empty", ["synthetic"], command="CMD")
    assert "| synthetic | not run" in text and "## Scores" not in text and "- none" in text
    assert not (tmp_path / "empty").exists()  # gathering writes nothing without write=


def test_step_seconds(pc):
    st = pc.step_seconds({"bench: segment x": 3.0, "bench: graph (knn)": 1.0, "bench: samples": 2.0,
                          "bench: evaluate a": 4.0, "bench: evaluate b": 5.0, "unrelated": 7.0})
    assert st == {"segmentation": 3.0, "graph + samples + descriptors": 3.0, "evaluate + diagnostics": 9.0}


def test_missing_data_is_skipped_and_a_failure_is_failed(pc, tmp_path, monkeypatch):
    """A set whose data are missing is 'skipped: <why>'; one that fails after loading is 'failed: <error>';
    both are written to paper.json and listed in the gathered table (never dropped)."""
    monkeypatch.setenv("TISSUEGRAPH_SHARED_DATA", str(tmp_path / "no_data"))

    class _DS:
        tasks = [{"task": "classification"}]

    def boom(*a, **k):
        raise RuntimeError("boom")

    real = pc.make_dataset
    monkeypatch.setattr(pc, "make_dataset", lambda name, cfg, seed: _DS() if name == "synthetic" else real(name, cfg,
                                                                                                            seed))
    monkeypatch.setattr(pc, "run_bench", boom)
    out = tmp_path / "o"
    assert pc.main(["--outdir", str(out), "--datasets", "her2st", "synthetic", "--write", str(tmp_path / "r")]) == 0
    her = json.loads((out / "her2st" / "paper.json").read_text())
    syn = json.loads((out / "synthetic" / "paper.json").read_text())
    assert her["status"].startswith("skipped: No data folder for HER2ST")
    assert syn["status"] == "failed: RuntimeError('boom')"
    text = (tmp_path / "r.md").read_text()
    assert "| her2st | skipped: " in text and "| synthetic | failed: RuntimeError('boom') |" in text
    with pytest.raises(SystemExit, match="at least 5 sections"):
        pc.main(["--outdir", str(out), "--datasets", "synthetic_spots", "--spot-sections", "4"])
