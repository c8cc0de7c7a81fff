"""A synthetic diagnostic benchmark: the label depends on exactly one controlled factor.

Each sample is a small synthetic H&E image rendered by the synthetic slide's Beer-Lambert renderer
(:mod:`._synth_render`) from an explicit list of nuclei, so it goes through the real pipeline from
pixels (segmentation -> features -> graph -> samples -> descriptors). Four factors describe a sample;
for a benchmark of factor ``f`` the label sets ``f`` (two non-overlapping ranges) and the other three
are drawn from their full range, independently of the label:

``structure``
    arrangement of the nuclei: ``dispersed`` (hard-core random positions, cluster fraction 0-0.1) vs
    ``clustered`` (0.8-1 of the nuclei around cluster centres, about 25 per cluster, Gaussian sd 6 µm: packed clumps; the
    other nuclei keep an extra 2 µm x (1 - cluster fraction) apart, so dispersed tissue is more regular). Number, cell-type
    composition and nuclear shape are drawn from the same distributions for both labels.
``morphology``
    nuclear elongation at equal nuclear area: ``round`` (minor/major axis 0.8-0.95) vs ``elongated``
    (0.35-0.5). The amount of stain per nucleus is the same in expectation.
``density``
    nuclei per 1000 µm²: ``sparse`` (1.0-1.6) vs ``dense`` (2.6-3.5).
``stain``
    stain colour only (a pure shortcut): the hematoxylin/eosin optical-density vectors move between
    the Ruifrok-Johnston and the Macenko reference vectors (mixing weight 0-0.2 = ``stain_a`` vs
    0.8-1 = ``stain_b``); nothing about the tissue changes.

Cell types are drawn per nucleus from one fixed mixture (epithelial 0.15, fibroblast 0.25,
lymphocyte 0.35, tumour 0.25) with type-specific nuclear areas and chromatin, so composition carries
no label. Samples are grouped into ``patient``\\ s; a patient's stain (when stain is not the factor)
and stain strength are shared by its samples, as between labs, and every patient has both labels.

With ``spots=True`` the benchmark is instead a set of synthetic sections (the full generator: glands,
stroma, immune aggregates, tumour) covered by Visium-like spots whose synthetic expression is a known
function of the true cell-type counts in the spot plus Poisson noise (see :func:`spot_expression`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .. import _keys as K
from .._errors import InputError
from .._logging import logger, progress
from .._validate import check_positive
from ._loaders import GLASS_RGB, BenchDataset, mosaic
from ._synth_layout import CELL_TYPES, LYM, TUM, Layout
from ._synth_render import Renderer
from ._synthetic import STAIN_PRESETS, _unit

__all__ = ["diagnostic_benchmark", "spot_expression", "DIAGNOSTIC_FACTORS"]

DIAGNOSTIC_FACTORS: tuple[str, ...] = ("structure", "morphology", "density", "stain")
"""The controlled factors of :func:`diagnostic_benchmark`."""

# factor -> parameter, full (nuisance) range, the two label ranges and their names
_FACTORS = {
    "structure": ("cluster_fraction", (0.0, 1.0), ((0.0, 0.1), (0.8, 1.0)), ("dispersed", "clustered")),
    "morphology": ("aspect", (0.35, 0.95), ((0.8, 0.95), (0.35, 0.5)), ("round", "elongated")),
    "density": ("density_per_1000um2", (1.0, 3.5), ((1.0, 1.6), (2.6, 3.5)), ("sparse", "dense")),
    "stain": ("stain_mix", (0.0, 1.0), ((0.0, 0.2), (0.8, 1.0)), ("stain_a", "stain_b")),
}
_TYPE_MIX = np.array([0.15, 0.25, 0.35, 0.25])      # EPI, FIB, LYM, TUM (CELL_TYPES order)
_TYPE_AREA = np.array([88.0, 35.0, 38.5, 137.0])    # µm², as drawn by the slide generator
_HEMA_LO = np.array([1.0, 1.45, 1.7, 0.95])
_HEMA_SPAN = np.array([0.2, 0.25, 0.3, 0.8])
_CLUSTER_SD_UM = 6.0
_NUCLEI_PER_CLUSTER = 25
_DISPERSED_GAP_UM = 2.0  # extra spacing of nuclei that are not in clusters (x (1 - cluster fraction))


class _ExplicitLayout(Layout):
    """A Layout whose nuclei are given (all tissue, one background class, no glands)."""

    def __init__(self, *, size_px: int, mpp: float, seed: int, nuclei: dict, background: str = "stroma"):
        super().__init__(width=size_px, height=size_px, mpp=mpp, seed=seed, tissue_fraction=1.0, density=0.0,
                         region_classes=(background,), region_size_um=300.0)
        self._nuc = nuclei

    def nuclei_band(self, y0: float, y1: float) -> dict:
        d = self._nuc
        keep = (d["y"] + self.reach >= y0) & (d["y"] - self.reach < y1)
        return {k: v[keep] for k, v in d.items()}

    def glands_in_band(self, y0: float, y1: float) -> dict:
        return {k: np.zeros(0) for k in ("id", "x", "y", "r0", "e2", "p2", "e3", "p3", "lumen")}


def _stain(mix: float, strength_jitter: np.ndarray) -> np.ndarray:
    base = (1 - mix) * STAIN_PRESETS["ruifrok"] + mix * STAIN_PRESETS["macenko"]
    return np.stack([_unit(np.clip(base[r] + 0.02 * strength_jitter[r], 0.02, None)) for r in range(2)])


def _place(rng: np.random.Generator, n_target: int, size_um: float, cluster_fraction: float, aspect: float
           ) -> dict:
    """Random sequential adsorption of ``n_target`` nuclei (3 discs each along the axis, no overlap)."""
    n_clusters = max(1, int(round(cluster_fraction * n_target / _NUCLEI_PER_CLUSTER)))
    margin = 8.0
    centres = rng.uniform(margin, size_um - margin, size=(n_clusters, 2))
    xs, ys, ct, L, W, ang = [], [], [], [], [], []
    dx_, dy_, dr_ = [], [], []  # accepted discs
    attempts = 0
    max_attempts = 60 * max(n_target, 1)
    while len(xs) < n_target and attempts < max_attempts:
        batch = 64
        attempts += batch
        clustered = rng.random(batch) < cluster_fraction
        pos = rng.uniform(0, size_um, size=(batch, 2))
        k = rng.integers(0, n_clusters, size=batch)
        pos[clustered] = centres[k[clustered]] + rng.normal(0, _CLUSTER_SD_UM, size=(int(clustered.sum()), 2))
        types = rng.choice(4, size=batch, p=_TYPE_MIX)
        area = _TYPE_AREA[types] * np.exp(0.15 * rng.standard_normal(batch))
        a = np.clip(aspect + 0.04 * rng.standard_normal(batch), 0.25, 1.0)
        ll = np.sqrt(4 * area / (math.pi * a))
        ww = a * ll
        th = rng.uniform(0, math.pi, batch)
        for j in range(batch):
            if len(xs) >= n_target:
                break
            x, y = pos[j]
            if not (0 <= x < size_um and 0 <= y < size_um):
                continue
            off = max(ll[j] / 2 - ww[j] / 2, 0.0)
            c, s = math.cos(th[j]), math.sin(th[j])
            cx = x + np.array([-off, 0.0, off]) * c
            cy = y + np.array([-off, 0.0, off]) * s
            r = ww[j] / 2 + 0.4 + (0.0 if clustered[j] else _DISPERSED_GAP_UM * (1 - cluster_fraction) / 2)
            if dx_:
                ax, ay, ar = np.asarray(dx_), np.asarray(dy_), np.asarray(dr_)
                d2 = (ax[None, :] - cx[:, None]) ** 2 + (ay[None, :] - cy[:, None]) ** 2
                if (d2 < (ar[None, :] + r) ** 2).any():
                    continue
            xs.append(x)
            ys.append(y)
            ct.append(types[j])
            L.append(ll[j])
            W.append(ww[j])
            ang.append(th[j])
            dx_ += cx.tolist()
            dy_ += cy.tolist()
            dr_ += [r] * 3
    n = len(xs)
    ctype = np.asarray(ct, np.int8)
    base = rng.integers(0, 2 ** 63, size=n, dtype=np.int64).astype(np.uint64)
    harm = np.stack([rng.uniform(0, [0.02, 0.02, 0.01, 0.01][j], n) for j in range(4)], 1)
    harm[ctype == TUM] *= 3.0
    Ln, Wn = np.asarray(L, np.float32), np.asarray(W, np.float32)
    return dict(x=np.asarray(xs, float), y=np.asarray(ys, float), ctype=ctype, region=np.zeros(n, np.int8),
                L=Ln, W=Wn, angle=np.asarray(ang, np.float32), harm=harm.astype(np.float32),
                hphase=rng.uniform(0, 2 * math.pi, (n, 4)).astype(np.float32),
                rc=(np.sqrt(Ln * Wn) / 2).astype(np.float32), gap=np.zeros(n, np.float32),
                hema=(_HEMA_LO[ctype] + _HEMA_SPAN[ctype] * rng.random(n)).astype(np.float32),
                nucl=Layout._nucleolus(base, ctype, Ln, Wn), gland=np.zeros(n, np.int64),
                id=np.arange(1, n + 1, dtype=np.int64))


def _truth_of(labels: np.ndarray, nuc: dict, *, x0: float, y0: float, sample: str, id_offset: int) -> pd.DataFrame:
    """Per nucleus with pixels: centroid of its label pixels (in mosaic px), type, area, axes."""
    t = K.truth
    flat = labels.ravel().astype(np.int64)
    w = labels.shape[1]
    n = len(nuc["x"])
    cnt = np.bincount(flat, minlength=n + 1)[1:]
    idx = np.arange(flat.size)
    sx = np.bincount(flat, weights=idx % w, minlength=n + 1)[1:]
    sy = np.bincount(flat, weights=idx // w, minlength=n + 1)[1:]
    ok = cnt > 0
    ids = np.flatnonzero(ok)
    return pd.DataFrame({
        t.id: ids + 1 + id_offset,
        t.x: sx[ok] / cnt[ok] + x0, t.y: sy[ok] / cnt[ok] + y0,
        t.cell_type: pd.Categorical.from_codes(nuc["ctype"][ok].astype(int), categories=list(CELL_TYPES)),
        t.area_px: cnt[ok],
        t.major_axis_um: nuc["L"][ok].astype(float), t.minor_axis_um: nuc["W"][ok].astype(float),
        K.obs.sample: sample,
    })


def _check_factor(factor) -> tuple[str, ...]:
    if factor == "all":
        return DIAGNOSTIC_FACTORS
    fs = (factor,) if isinstance(factor, str) else tuple(factor)
    bad = [f for f in fs if f not in DIAGNOSTIC_FACTORS]
    if bad or not fs:
        raise InputError(f"factor must be 'all' or one of {DIAGNOSTIC_FACTORS} (or a list of them), got {factor!r}.")
    return fs


def diagnostic_benchmark(*, factor: str | Sequence[str] = "all", n_samples: int = 48, size_um: float = 160.0,
                         mpp: float = 0.5, seed: int = 0, spots: bool = False, n_patients: int = 6,
                         noise: float = 0.02, gap_px: int = 32, n_sections: int = 3,
                         section_size_um: float = 800.0, spot_diameter_um: float = 55.0,
                         spot_pitch_um: float = 100.0, n_genes: int = 24, expression_noise: float = 1.0,
                         progress_bar: bool | None = None) -> BenchDataset:
    """Synthetic H&E samples whose label depends on exactly one controlled factor (see module docs).

    Parameters
    ----------
    factor
        ``'structure'``, ``'morphology'``, ``'density'``, ``'stain'``, a list of them, or ``'all'``.
        With several factors, each gets its own ``n_samples`` samples (``obs['factor']``) and task.
    n_samples
        Samples per factor (half of each label).
    size_um
        Edge of a sample image, µm (160 µm at 0.5 µm/px = 320 px).
    mpp
        µm/px of the rendered images.
    seed
        Seed of every random choice; the same seed gives the same pixels.
    spots
        Make the spot benchmark instead (``n_sections`` synthetic sections of ``section_size_um`` with
        spots of ``spot_diameter_um`` every ``spot_pitch_um`` on a hexagonal lattice, and synthetic
        expression of ``n_genes`` genes); ``factor`` is then ignored.
    n_patients
        Groups of samples sharing a stain (when stain is not the factor); every patient has both labels.
    noise
        Sensor noise (fraction of 255).
    gap_px
        Glass between the sample images in the mosaic.
    expression_noise
        Scale of the extra (log-normal, sd 0.25 x this) spot-to-spot variation of each gene on top of
        the Poisson noise; 0 leaves only Poisson noise.
    progress_bar
        Show progress (default ``tg.settings.progress``).

    Returns
    -------
    :class:`~tissuegraph.datasets.BenchDataset`: ``image`` is a mosaic (one sample image per tile, glass
    between), ``kind='region'``; ``obs``: ``label``, ``factor``, ``patient``, the four factor values
    (``cluster_fraction``, ``aspect``, ``density_per_1000um2``, ``stain_mix``), ``stain_strength`` and
    the true counts ``n_true``/``true_frac__<type>``; ``truth`` = every drawn nucleus (mosaic px). One
    classification task per factor (``subset={'factor': f}``, grouped by patient). For ``spots=True``
    see :func:`spot_expression` for the targets.
    """
    n_samples = int(check_positive(n_samples, "n_samples", integer=True))
    size_um = float(check_positive(size_um, "size_um"))
    mpp = float(check_positive(mpp, "mpp"))
    if not 0.1 <= mpp <= 2.0:
        raise InputError(f"mpp must lie in [0.1, 2] µm/px for nuclei to be drawn, got {mpp}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}.")
    n_patients = int(check_positive(n_patients, "n_patients", integer=True))
    if spots:
        return _spot_benchmark(n_sections=n_sections, section_size_um=section_size_um, mpp=mpp, seed=int(seed),
                               diameter_um=spot_diameter_um, pitch_um=spot_pitch_um, n_genes=n_genes,
                               noise=noise, gap_px=gap_px, expression_noise=expression_noise,
                               progress_bar=progress_bar)
    factors = _check_factor(factor)
    if n_samples < 4:
        raise InputError(f"n_samples must be >= 4 (two per label at least), got {n_samples}.")
    size_px = int(round(size_um / mpp))
    if size_px < 64:
        raise InputError(f"size_um / mpp = {size_px} px is too small; use at least 64 px per sample.")
    rng_p = np.random.default_rng([int(seed), 7001])
    patient_mix = rng_p.uniform(0, 1, n_patients)
    patient_strength = rng_p.uniform(0.85, 1.15, n_patients)
    images, rows, ids, truths = [], [], [], []
    id_offset = 0
    jobs = [(f, i) for f in factors for i in range(n_samples)]
    for f, i in progress(jobs, total=len(jobs), desc="diagnostic benchmark", enabled=progress_bar):
        fi = DIAGNOSTIC_FACTORS.index(f)
        rng = np.random.default_rng([int(seed), fi, i])
        label = i % 2
        patient = (i // 2) % n_patients
        params = {}
        for g, (pname, full, bands, _names) in _FACTORS.items():
            lo, hi = bands[label] if g == f else full
            params[pname] = float(rng.uniform(lo, hi))
        if f != "stain":  # the patient's stain, with a little per-sample variation
            params["stain_mix"] = float(np.clip(patient_mix[patient] + 0.05 * rng.standard_normal(), 0, 1))
        strength = float(np.clip(patient_strength[patient] + 0.03 * rng.standard_normal(), 0.7, 1.3))
        n_target = int(round(params["density_per_1000um2"] * size_um ** 2 / 1000.0))
        nuc = _place(rng, n_target, size_um, params["cluster_fraction"], params["aspect"])
        sample_seed = int(rng.integers(0, 2 ** 31 - 1))
        layout = _ExplicitLayout(size_px=size_px, mpp=mpp, seed=sample_seed, nuclei=nuc)
        stain = _stain(params["stain_mix"], rng.standard_normal((2, 3)))
        rgb, lab = Renderer(layout, stain=stain, stain_intensity=strength, blur_um=0.0, noise=noise).render(
            0, size_px, 0, size_px)
        sid = f"{f}_{i:04d}"
        images.append(rgb)
        tr = _truth_of(lab, nuc, x0=0.0, y0=0.0, sample=sid, id_offset=id_offset)
        id_offset += len(nuc["x"])
        truths.append(tr)
        counts = tr[K.truth.cell_type].value_counts()
        row = {K.obs.label: _FACTORS[f][3][label], "factor": f, K.obs.patient: f"P{patient}",
               **params, "stain_strength": strength, "n_true": int(len(tr)),
               "n_placed": int(len(nuc["x"])), "n_target": n_target}
        for t in CELL_TYPES:
            row[f"true_frac__{t}"] = float(counts.get(t, 0)) / max(len(tr), 1)
        rows.append(row)
        ids.append(sid)
    canvas, boxes = mosaic(images, gap_px=gap_px, background=GLASS_RGB)
    from shapely.geometry import box

    regions = [box(*b) for b in boxes]
    for tr, b in zip(truths, boxes):  # to mosaic coordinates
        tr[K.truth.x] += b[0] + 0.5
        tr[K.truth.y] += b[1] + 0.5
    truth = pd.concat(truths, ignore_index=True)
    obs = pd.DataFrame(rows, index=pd.Index(ids))
    obs[K.obs.label] = obs[K.obs.label].astype("category")
    obs["factor"] = pd.Categorical(obs["factor"], categories=list(factors))
    probes = {"density (true)": "density_per_1000um2", "elongation (true minor/major)": "aspect",
              "clustering (true cluster fraction)": "cluster_fraction",
              "composition (true)": [f"true_frac__{t}" for t in CELL_TYPES]}
    tasks = [dict(name=f"diagnostic: {f}", label_key=K.obs.label, task="classification", group_key=K.obs.patient,
                  subset={"factor": f}, chance=0.5, probes=probes) for f in factors]
    meta = {"generator": "tissuegraph.datasets.diagnostic_benchmark", "factors": list(factors), "seed": int(seed),
            "size_um": size_um, "mpp": mpp, "n_samples": n_samples, "n_patients": n_patients,
            "ranges": {g: {"full": v[1], "labels": dict(zip(v[3], v[2]))} for g, v in _FACTORS.items()},
            "type_mixture": dict(zip(CELL_TYPES, _TYPE_MIX.tolist()))}
    logger.info("diagnostic_benchmark: %d samples (%s), %d nuclei, mosaic %s", len(obs), ", ".join(factors),
                len(truth), canvas.shape[:2])
    return BenchDataset(name="diagnostic", image=canvas, mpp=mpp, slide_id="diagnostic", kind="region", obs=obs,
                        regions=regions, tasks=tasks, tiles=boxes, truth=truth, metadata=meta)


# --------------------------------------------------------------------------------------------- spots
def spot_expression(composition: np.ndarray, *, n_genes: int = 24, seed: int = 0, noise: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """Synthetic spot expression as a known function of the true cell-type counts, plus noise.

    For counts ``n_t`` of the four types (``CELL_TYPES`` order) in a spot, gene ``g`` has the mean

    ``mu_g = b_g + sum_t W[g, t] n_t + c_g * n_lym * n_tum / (n_lym + n_tum + 1)``

    with a baseline ``b_g`` ~ U(0.5, 2), marker weights (gene ``g`` is a marker of type ``g mod 4``:
    weight U(1, 3); other types U(0, 0.3)) and, for every third gene, an immune-tumour contact term
    ``c_g`` ~ U(1, 3) (zero otherwise). Counts are Poisson with that mean, times a log-normal spot effect
    (sd ``0.25 * noise``) per gene.

    Returns
    -------
    ``(log1p counts, log1p mean, gene names, parameters)``: float32 arrays (n_spots, n_genes).
    """
    comp = np.asarray(composition, dtype=np.float64)
    if comp.ndim != 2 or comp.shape[1] != len(CELL_TYPES) or (comp < 0).any() or not np.isfinite(comp).all():
        raise InputError(f"composition must be (n_spots, {len(CELL_TYPES)}) non-negative counts, got {comp.shape}.")
    n_genes = int(check_positive(n_genes, "n_genes", integer=True))
    rng = np.random.default_rng([int(seed), 9103])
    b = rng.uniform(0.5, 2.0, n_genes)
    W = rng.uniform(0.0, 0.3, (n_genes, len(CELL_TYPES)))
    marker = np.arange(n_genes) % len(CELL_TYPES)
    W[np.arange(n_genes), marker] = rng.uniform(1.0, 3.0, n_genes)
    c = np.where(np.arange(n_genes) % 3 == 2, rng.uniform(1.0, 3.0, n_genes), 0.0)
    lym, tum = comp[:, LYM], comp[:, TUM]
    contact = lym * tum / (lym + tum + 1.0)
    mu = b[None, :] + comp @ W.T + contact[:, None] * c[None, :]
    rng_n = np.random.default_rng([int(seed), 9109])
    spot_eff = np.exp(0.25 * float(noise) * rng_n.standard_normal(mu.shape)) if noise > 0 else 1.0
    counts = rng_n.poisson(mu * spot_eff)
    names = [f"gene{g:02d}_{CELL_TYPES[marker[g]]}" + ("_contact" if c[g] > 0 else "") for g in range(n_genes)]
    params = {"baseline": b.tolist(), "weights": W.tolist(), "contact": c.tolist(), "noise": float(noise),
              "formula": "mu = b + W n + c * n_lym n_tum / (n_lym + n_tum + 1); counts ~ Poisson(mu * lognormal)"}
    return (np.log1p(counts).astype(np.float32), np.log1p(mu).astype(np.float32), names, params)


def _hex_lattice(width_um: float, height_um: float, pitch: float, margin: float) -> np.ndarray:
    pts = []
    dy = pitch * math.sqrt(3) / 2
    r = 0
    y = margin
    while y <= height_um - margin:
        x = margin + (pitch / 2 if r % 2 else 0.0)
        while x <= width_um - margin:
            pts.append((x, y))
            x += pitch
        y += dy
        r += 1
    return np.asarray(pts).reshape(-1, 2)


def _spot_benchmark(*, n_sections, section_size_um, mpp, seed, diameter_um, pitch_um, n_genes, noise, gap_px,
                    expression_noise, progress_bar) -> BenchDataset:
    from scipy.spatial import cKDTree

    from ._synthetic import synthetic_tissue

    n_sections = int(check_positive(n_sections, "n_sections", integer=True))
    section_size_um = float(check_positive(section_size_um, "section_size_um"))
    diameter_um = float(check_positive(diameter_um, "spot_diameter_um"))
    pitch_um = float(check_positive(pitch_um, "spot_pitch_um"))
    size_px = int(round(section_size_um / mpp))
    if section_size_um < 2 * diameter_um:
        raise InputError(f"section_size_um ({section_size_um}) must be at least twice the spot diameter.")
    images, truths, per_section = [], [], []
    for s in progress(range(n_sections), total=n_sections, desc="synthetic sections", enabled=progress_bar):
        syn = synthetic_tissue((size_px, size_px), mpp=mpp, seed=int(seed) * 1000 + s, tissue_fraction=0.85,
                               stain="random", noise=noise, region_size_um=min(300.0, section_size_um / 2.5))
        images.append(syn.image)
        truths.append(syn.nuclei)
        per_section.append(syn)
    canvas, boxes = mosaic(images, gap_px=gap_px)
    lattice = _hex_lattice(section_size_um, section_size_um, pitch_um, diameter_um / 2 + 2.0)
    centres, obs_rows, ids, comps, truth_parts = [], [], [], [], []
    r_px = diameter_um / 2 / mpp
    for s, (syn, b) in enumerate(zip(per_section, boxes)):
        nuc = syn.nuclei
        ox, oy = b[0] + 0.5, b[1] + 0.5
        tr = nuc.copy()
        tr[K.truth.x] += ox
        tr[K.truth.y] += oy
        tr[K.obs.sample] = f"S{s}"
        tr[K.truth.id] = tr[K.truth.id].astype(np.int64) + s * 10_000_000
        truth_parts.append(tr)
        c_px = lattice / mpp - 0.5  # µm -> px centres inside the section
        ci = np.clip(np.rint(c_px).astype(int), 0, size_px - 1)
        in_tissue = syn.regions[ci[:, 1], ci[:, 0]] > 0
        c_px = c_px[in_tissue]
        xy = nuc[[K.truth.x, K.truth.y]].to_numpy(float)
        tree = cKDTree(xy) if len(xy) else None
        types = nuc[K.truth.cell_type].cat.codes.to_numpy()
        regions = nuc[K.truth.region].astype(str).to_numpy()
        for j, c in enumerate(c_px):
            members = tree.query_ball_point(c, r_px) if tree is not None else []
            members = np.asarray(members, dtype=np.int64)
            if len(members) == 0:
                continue
            comp = np.bincount(types[members], minlength=len(CELL_TYPES))
            vals, cnt = np.unique(regions[members], return_counts=True)
            centres.append((c[0] + ox, c[1] + oy))
            comps.append(comp)
            obs_rows.append({K.obs.label: vals[np.argmax(cnt)], K.obs.patient: f"S{s}", "n_true": int(len(members)),
                             **{f"true_count__{t}": int(comp[k]) for k, t in enumerate(CELL_TYPES)}})
            ids.append(f"S{s}_spot{j:04d}")
    if not ids:
        raise InputError("No spot covers any nucleus; use larger sections.")
    comp = np.asarray(comps, np.float64)
    expr, mean, names, eparams = spot_expression(comp, n_genes=n_genes, seed=seed, noise=expression_noise)
    obs = pd.DataFrame(obs_rows, index=pd.Index(ids))
    obs[K.obs.label] = obs[K.obs.label].astype("category")
    targets = {"expression": (expr, names), "expression_mean": (mean, names),
               "composition": (comp.astype(np.float32), [f"n_{t}" for t in CELL_TYPES])}
    probes = {"composition (true counts)": [f"true_count__{t}" for t in CELL_TYPES], "nuclei (true)": "n_true"}
    tasks = [dict(name="diagnostic spots: expression", label_key="expression", task="regression",
                  group_key=K.obs.patient, probes=probes),
             dict(name="diagnostic spots: region", label_key=K.obs.label, task="classification",
                  group_key=K.obs.patient, probes=probes)]
    meta = {"generator": "tissuegraph.datasets.diagnostic_benchmark(spots=True)", "seed": int(seed),
            "n_sections": n_sections, "section_size_um": section_size_um, "spot_diameter_um": diameter_um,
            "spot_pitch_um": pitch_um, "expression": eparams}
    truth = pd.concat(truth_parts, ignore_index=True)
    logger.info("diagnostic_benchmark(spots=True): %d spots on %d sections", len(obs), n_sections)
    return BenchDataset(name="diagnostic_spots", image=canvas, mpp=mpp, slide_id="diagnostic_spots", kind="spot",
                        obs=obs, centers=np.asarray(centres), diameter_um=diameter_um, tasks=tasks, targets=targets,
                        tiles=boxes, truth=truth, metadata=meta)
