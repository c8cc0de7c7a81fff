"""The global, lazy layout of the synthetic slide: tissue envelope, region classes, collagen flow,
glands and nuclei.

Every quantity is a pure function of the seed and of integer coordinates of fixed cells (µm units), so
any band of rows can be (re)generated independently and in any order:

- tissue envelope, region class fields and the stroma flow are smooth value-noise fields;
- glands live on a coarse grid of ``GLAND_CELL_UM`` cells, at most one per cell, and exist only where
  the whole gland lies inside a gland region;
- nuclei are generated per ``NUCLEUS_CELL_UM`` cell by a hard-core process. Cells are coloured in a
  2 x 2 pattern (phases 0..3 by the parity of the cell column and row); a cell only has to avoid the
  nuclei of already-finished neighbour cells of lower phase, so even cell rows are self-contained and an
  odd row depends only on the two even rows around it (no recursion, no grid artefacts at cell borders).
  Within a phase, candidates are thinned by a greedy maximal independent set in random priority order
  (random sequential adsorption), computed with vectorised rounds.
- Nucleus ids are 1..N in generation order (cell row by cell row), which does not depend on how the slide
  is cut into strips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from . import _synth_noise as nz

CELL_TYPES = ("epithelial", "fibroblast", "lymphocyte", "tumour")
EPI, FIB, LYM, TUM = range(4)
REGION_CLASSES = ("gland", "stroma", "immune", "tumour")

NUCLEUS_CELL_UM = 48.0
GLAND_CELL_UM = 115.0
GLAND_R_RANGE = (29.0, 44.0)     # outer (basal) radius of a gland, µm
GLAND_MAX_R = GLAND_R_RANGE[1] * 1.2
BASAL_TO_NUCLEUS_UM = 8.5        # basal membrane to epithelial nucleus centre
REACH_UM = 14.0                  # no nucleus pixel lies further than this from its centre

# hash keys (arbitrary distinct constants)
K_ENV, K_CLASS, K_PSI, K_PSI_DIR = 11, 101, 211, 223
K_GLAND, K_GLAND_NUC = 1009, 1013
K_COUNT, K_CAND, K_ATTR = 2003, 2011, 2027


@dataclass(frozen=True)
class RegionSpec:
    """Candidate intensity (per 1000 µm² at density 1) and cell-type mixture of one region class."""

    intensity: float
    mixture: tuple[tuple[int, float], ...]
    flow_aligned: bool = False


REGION_SPECS = {
    # lamina propria between glands: loose, lymphocytes and fibroblasts
    "gland": RegionSpec(3.0, ((LYM, 0.6), (FIB, 0.4))),
    # sparse spindle cells aligned with the collagen
    "stroma": RegionSpec(1.8, ((FIB, 0.9), (LYM, 0.1))),
    # packed lymphoid aggregate (saturates: the hard core limits the final density)
    "immune": RegionSpec(70.0, ((LYM, 0.97), (FIB, 0.03))),
    # solid sheets of large pleomorphic nuclei with a few infiltrating lymphocytes
    "tumour": RegionSpec(30.0, ((TUM, 0.9), (LYM, 0.08), (FIB, 0.02))),
}

# per type: gap added to the hard-core distance (µm; negative lets crowded nuclei touch)
TYPE_GAP = np.array([0.3, 0.8, 0.4, -1.2])


def _poisson_table(lam: float) -> np.ndarray:
    """CDF of Poisson(lam) for inverse-CDF sampling from hashed uniforms."""
    kmax = int(lam + 12 * math.sqrt(lam) + 12)
    k = np.arange(kmax + 1)
    logp = k * math.log(lam) - lam - np.array([math.lgamma(i + 1) for i in k]) if lam > 0 else None
    if logp is None:
        return np.array([1.0])
    cdf = np.cumsum(np.exp(logp))
    cdf[-1] = 1.0
    return cdf


def _substream(base: np.ndarray, j: int) -> np.ndarray:
    """An independent uniform [0,1) from a per-item 64-bit hash ``base`` and attribute number ``j``."""
    b = np.asarray(base)
    h = nz._mix64(b.reshape(-1) ^ np.uint64(((j + 1) * 0x9E3779B97F4A7C15) & ((1 << 64) - 1))).reshape(b.shape)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _normal(base: np.ndarray, j: int) -> np.ndarray:
    u1 = _substream(base, j)
    u2 = _substream(base, j + 1000)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def _empty_nuclei() -> dict:
    f4 = np.zeros(0, np.float32)
    return dict(x=np.zeros(0), y=np.zeros(0), ctype=np.zeros(0, np.int8), region=np.zeros(0, np.int8),
                L=f4, W=f4, angle=f4, harm=np.zeros((0, 4), np.float32),
                hphase=np.zeros((0, 4), np.float32), rc=f4, gap=f4, hema=f4, nucl=np.zeros((0, 4), np.float32),
                gland=np.zeros(0, np.int64), prio=np.zeros(0))


def _concat(parts: list[dict]) -> dict:
    parts = [p for p in parts if len(p["x"])]
    if not parts:
        return _empty_nuclei()
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _take(d: dict, sel) -> dict:
    return {k: v[sel] for k, v in d.items()}


class Layout:
    """Global geometry of one synthetic slide (all lengths in µm; slide covers [0, W*mpp) x [0, H*mpp))."""

    def __init__(self, *, width: int, height: int, mpp: float, seed: int, tissue_fraction: float,
                 density: float, region_classes: tuple[str, ...], region_size_um: float):
        self.width, self.height, self.mpp = int(width), int(height), float(mpp)
        self.seed = int(seed)
        self.tissue_fraction = float(tissue_fraction)
        self.density = float(density)
        self.region_classes = tuple(region_classes)
        self.region_size_um = float(region_size_um)
        self.Wum, self.Hum = self.width * self.mpp, self.height * self.mpp
        self.env_scale = max(0.35 * max(self.Wum, self.Hum), 2.5 * self.region_size_um)
        self.edge_margin = 0.08 * min(self.Wum, self.Hum)
        self.psi_scale = 300.0
        self.psi_amp = 0.28 * self.psi_scale
        ang = 2 * math.pi * float(nz.uniform(self.seed, K_PSI_DIR, 0))
        self.psi_dir = (math.cos(ang), math.sin(ang))
        self.gland_code = self.region_classes.index("gland") if "gland" in self.region_classes else -1
        self.specs = [REGION_SPECS[r] for r in self.region_classes]
        self.cell = NUCLEUS_CELL_UM
        self.ncx = max(1, math.ceil(self.Wum / self.cell))
        self.ncy = max(1, math.ceil(self.Hum / self.cell))
        self.ngx = max(1, math.ceil(self.Wum / GLAND_CELL_UM))
        self.ngy = max(1, math.ceil(self.Hum / GLAND_CELL_UM))
        self._poisson = [_poisson_table(s.intensity * self.density * self.cell ** 2 / 1000.0)
                         for s in self.specs]
        self.threshold = self._calibrate_threshold()
        # memo
        self._gland_rows: dict[int, dict] = {}
        self._even_darts: dict[int, dict] = {}
        self._rows: dict[int, dict] = {}
        self._row_counts: list[int] = []
        self.table_parts: list[dict] = []

    # ------------------------------------------------------------------ smooth fields
    def _edge_penalty(self, x, y):
        if self.tissue_fraction >= 1.0:
            return 0.0
        d = np.minimum(np.minimum(x, self.Wum - x), np.minimum(y, self.Hum - y))
        return 1.5 * np.clip(1.0 - d / self.edge_margin, 0.0, None) ** 2

    def envelope_points(self, x, y):
        e = nz.fbm_points(self.seed, K_ENV, x, y, self.env_scale, octaves=3, gain=0.4)
        e = e + 0.08 * nz.value_noise_points(self.seed, K_ENV + 5, x, y, 45.0)
        return e - self._edge_penalty(x, y)

    def envelope_grid(self, xs, ys):
        e = nz.fbm_grid(self.seed, K_ENV, xs, ys, self.env_scale, octaves=3, gain=0.4)
        e += np.float32(0.08) * nz.value_noise_grid(self.seed, K_ENV + 5, xs, ys, 45.0)
        if self.tissue_fraction < 1.0:
            e -= self._edge_penalty(np.asarray(xs)[None, :], np.asarray(ys)[:, None]).astype(np.float32)
        return e

    def _calibrate_threshold(self) -> float:
        if self.tissue_fraction >= 1.0:
            return -np.inf
        n = 256
        xs = (np.arange(n) + 0.5) * self.Wum / n
        ys = (np.arange(n) + 0.5) * self.Hum / n
        e = self.envelope_grid(xs, ys).astype(np.float64)
        return float(np.quantile(e, 1.0 - self.tissue_fraction))

    def in_tissue_points(self, x, y):
        return self.envelope_points(x, y) > self.threshold

    def class_fields_points(self, x, y) -> np.ndarray:
        return np.stack([nz.fbm_points(self.seed, K_CLASS + 17 * k, x, y, self.region_size_um, octaves=2,
                                       gain=0.35) for k in range(len(self.region_classes))])

    def class_fields_grid(self, xs, ys) -> np.ndarray:
        return np.stack([nz.fbm_grid(self.seed, K_CLASS + 17 * k, xs, ys, self.region_size_um, octaves=2,
                                     gain=0.35) for k in range(len(self.region_classes))])

    def region_points(self, x, y) -> np.ndarray:
        if len(self.region_classes) == 1:
            return np.zeros(np.shape(x), np.int8)
        return np.argmax(self.class_fields_points(x, y), axis=0).astype(np.int8)

    def psi_points(self, x, y):
        return (x * self.psi_dir[0] + y * self.psi_dir[1]
                + self.psi_amp * nz.fbm_points(self.seed, K_PSI, x, y, self.psi_scale, octaves=2, gain=0.4))

    def psi_grid(self, xs, ys):
        xs = np.asarray(xs, np.float64)
        ys = np.asarray(ys, np.float64)
        out = nz.fbm_grid(self.seed, K_PSI, xs, ys, self.psi_scale, octaves=2, gain=0.4, dtype=np.float64)
        out *= self.psi_amp
        out += xs[None, :] * self.psi_dir[0]
        out += ys[:, None] * self.psi_dir[1]
        return out

    def flow_angle_points(self, x, y):
        """Direction of the collagen fibres (iso-lines of psi), radians in image coordinates."""
        h = 0.25
        gx = (self.psi_points(x + h, y) - self.psi_points(x - h, y)) / (2 * h)
        gy = (self.psi_points(x, y + h) - self.psi_points(x, y - h)) / (2 * h)
        return np.arctan2(-gx, gy)

    # ------------------------------------------------------------------ glands
    def gland_row(self, gy: int) -> dict:
        """Glands whose centre lies in gland-grid row ``gy`` (all columns), with their nuclei."""
        if gy in self._gland_rows:
            return self._gland_rows[gy]
        empty = dict(id=np.zeros(0, np.int64), x=np.zeros(0), y=np.zeros(0), r0=np.zeros(0),
                     e2=np.zeros(0), p2=np.zeros(0), e3=np.zeros(0), p3=np.zeros(0), lumen=np.zeros(0),
                     nuclei=_empty_nuclei())
        if self.gland_code < 0 or gy < 0 or gy >= self.ngy:
            self._gland_rows[gy] = empty
            return empty
        gx = np.arange(self.ngx)
        base = nz.hash_u64(self.seed, K_GLAND, gx, gy)
        r0 = GLAND_R_RANGE[0] + (GLAND_R_RANGE[1] - GLAND_R_RANGE[0]) * _substream(base, 0)
        e2 = 0.16 * _substream(base, 1)
        e3 = 0.06 * _substream(base, 2)
        p2 = 2 * np.pi * _substream(base, 3)
        p3 = 2 * np.pi * _substream(base, 4)
        rmax = r0 * (1 + e2 + e3)
        slack = np.maximum(GLAND_CELL_UM / 2 - rmax - 4.0, 0.0)
        cx = (gx + 0.5) * GLAND_CELL_UM + slack * (2 * _substream(base, 5) - 1)
        cy = (gy + 0.5) * GLAND_CELL_UM + slack * (2 * _substream(base, 6) - 1)
        apical = 3.0 + 5.0 * _substream(base, 7)
        ok = (_substream(base, 8) < 0.95) & (cx < self.Wum) & (cy < self.Hum)
        ok &= self.in_tissue_points(cx, cy)
        # (nearly) the whole gland must lie inside a gland region
        for ang in np.linspace(0, 2 * np.pi, 9)[:-1]:
            rr = 0.75 * rmax
            ok &= self.region_points(cx + rr * np.cos(ang), cy + rr * np.sin(ang)) == self.gland_code
        ok &= self.region_points(cx, cy) == self.gland_code
        sel = np.flatnonzero(ok)
        g = dict(id=(gy * self.ngx + gx[sel] + 1).astype(np.int64), x=cx[sel], y=cy[sel], r0=r0[sel],
                 e2=e2[sel], p2=p2[sel], e3=e3[sel], p3=p3[sel], lumen=apical[sel])
        nuc = [self._gland_nuclei(g, i) for i in range(len(sel))]
        g["nuclei"] = _concat(nuc)
        self._gland_rows[gy] = g
        return g

    @staticmethod
    def gland_radius(g: dict, i, phi):
        """Outer (basal) radius of gland ``i`` in direction ``phi``, µm."""
        return g["r0"][i] * (1 + g["e2"][i] * np.cos(2 * (phi - g["p2"][i]))
                             + g["e3"][i] * np.cos(3 * (phi - g["p3"][i])))

    @staticmethod
    def lumen_fraction(g: dict, i):
        """Lumen radius / outer radius (the lumen has the gland's shape)."""
        r0 = g["r0"][i]
        return (r0 - BASAL_TO_NUCLEUS_UM - 7.0 - g["lumen"][i]) / r0

    def _gland_nuclei(self, g: dict, i: int) -> dict:
        gid = int(g["id"][i])
        phi = np.linspace(0, 2 * np.pi, 721)
        rn = self.gland_radius(g, i, phi) - BASAL_TO_NUCLEUS_UM
        px, py = rn * np.cos(phi), rn * np.sin(phi)
        seg = np.hypot(np.diff(px), np.diff(py))
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        perim = arc[-1]
        base0 = nz.hash_u64(self.seed, K_GLAND_NUC, gid)
        spacing = 8.0 + 0.9 * float(_substream(base0, 0))
        n = max(3, int(perim // spacing))
        k = np.arange(n)
        base = nz.hash_u64(self.seed, K_GLAND_NUC, gid, k)
        s = (k + float(_substream(base0, 1)) + 0.25 * (_substream(base, 0) - 0.5)) * (perim / n)
        s = np.mod(s, perim)
        ph = np.interp(s, arc, phi)
        r = self.gland_radius(g, i, ph) - BASAL_TO_NUCLEUS_UM + 0.8 * _normal(base, 1)
        # outward normal of the ring ~ gradient direction of the polar curve
        dr = (self.gland_radius(g, i, ph + 1e-3) - self.gland_radius(g, i, ph - 1e-3)) / 2e-3
        tx = dr * np.cos(ph) - r * np.sin(ph)
        ty = dr * np.sin(ph) + r * np.cos(ph)
        normal_angle = np.arctan2(tx, -ty)  # tangent rotated by -90°: points outward
        x = g["x"][i] + r * np.cos(ph)
        y = g["y"][i] + r * np.sin(ph)
        L = np.clip(14.0 + 1.1 * _normal(base, 3), 11.0, 17.0)
        L = np.minimum(L, 0.6 * (r + BASAL_TO_NUCLEUS_UM))
        W = np.clip(8.0 + 0.5 * _normal(base, 5), 6.5, (perim / n) - 0.3)
        W = np.minimum(W, L)
        keep = (x >= 0) & (x < self.Wum) & (y >= 0) & (y < self.Hum)
        keep &= self.in_tissue_points(x, y)
        m = len(x)
        harm = np.stack([0.03 * _substream(base, 10 + j) for j in range(4)], axis=1)
        d = dict(x=x, y=y, ctype=np.full(m, EPI, np.int8), region=np.full(m, self.gland_code, np.int8),
                 L=L.astype(np.float32), W=W.astype(np.float32),
                 angle=(normal_angle + np.deg2rad(5.0) * _normal(base, 7)).astype(np.float32),
                 harm=harm.astype(np.float32),
                 hphase=np.stack([2 * np.pi * _substream(base, 20 + j) for j in range(4)], 1).astype(np.float32),
                 rc=(L / 2).astype(np.float32), gap=np.zeros(m, np.float32),
                 hema=(1.0 + 0.2 * _substream(base, 30)).astype(np.float32),
                 nucl=self._nucleolus(base, np.full(m, EPI), L, W),
                 gland=np.full(m, gid, np.int64), prio=np.ones(m))
        return _take(d, keep)

    def glands_in_band(self, y0: float, y1: float) -> dict:
        """Glands whose disc may reach into [y0, y1) µm."""
        lo = math.floor((y0 - GLAND_MAX_R) / GLAND_CELL_UM)
        hi = math.floor((y1 + GLAND_MAX_R) / GLAND_CELL_UM)
        rows = [self.gland_row(gy) for gy in range(max(lo, 0), min(hi, self.ngy - 1) + 1)]
        keys = ("id", "x", "y", "r0", "e2", "p2", "e3", "p3", "lumen")
        if not rows:
            return {k: np.zeros(0) for k in keys}
        return {k: np.concatenate([r[k] for r in rows]) for k in keys}

    def release_glands_below(self, y_um: float) -> None:
        gy_min = math.floor((y_um - GLAND_MAX_R) / GLAND_CELL_UM) - 1
        for gy in [g for g in self._gland_rows if g < gy_min]:
            del self._gland_rows[gy]

    # ------------------------------------------------------------------ nuclei
    @staticmethod
    def _nucleolus(base, ctype, L, W) -> np.ndarray:
        """(dx, dy, radius, strength) of a nucleolus in the nucleus frame, µm; strength 0 = none."""
        ctype = np.asarray(ctype)
        p = np.where(ctype == TUM, 0.75, np.where(ctype == EPI, 0.2, 0.0))
        has = _substream(base, 40) < p
        rad = np.where(ctype == TUM, 0.7 + 0.6 * _substream(base, 41), 0.55 + 0.2 * _substream(base, 41))
        ang = 2 * np.pi * _substream(base, 42)
        off = 0.3 * _substream(base, 43)
        out = np.stack([off * L / 2 * np.cos(ang), off * W / 2 * np.sin(ang), rad,
                        np.where(has, 0.5 + 0.4 * _substream(base, 44), 0.0)], axis=1)
        return out.astype(np.float32)

    def _darts(self, cy: int, parity: int) -> dict:
        """Candidate nuclei of the cells (cx % 2 == parity) of row cy, after thinning, before the hard core."""
        if self.density <= 0:
            return _empty_nuclei()
        cxs = np.arange(parity, self.ncx, 2)
        if len(cxs) == 0:
            return _empty_nuclei()
        C = self.cell
        # which classes can occur in each cell (7 x 7 probe points 8 µm apart, borders included; a
        # region sliver narrower than that inside a cell may miss its candidates)
        npr = 7
        t = np.linspace(0.0, 1.0, npr)
        px = ((cxs[:, None, None] + t[None, None, :]) * C).repeat(npr, 1)
        py = np.broadcast_to(((cy + t) * C)[None, :, None], px.shape)
        pxf, pyf = px.ravel(), np.ascontiguousarray(py).ravel()
        reg = self.region_points(pxf, pyf).reshape(len(cxs), npr * npr)
        env = self.envelope_points(pxf, pyf).reshape(len(cxs), npr * npr)
        near_tissue = (env > self.threshold - 0.05).any(axis=1)
        parts = []
        for k, spec in enumerate(self.specs):
            cand = np.flatnonzero(near_tissue & (reg == k).any(axis=1))
            if len(cand) == 0:
                continue
            cx = cxs[cand]
            u = nz.uniform(self.seed, K_COUNT, cx, cy, k)
            counts = np.searchsorted(self._poisson[k], u, side="right")
            if counts.sum() == 0:
                continue
            cell_of = np.repeat(cx, counts)
            slot = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            base = nz.hash_u64(self.seed, K_CAND, cell_of, cy, k, slot)
            x = (cell_of + _substream(base, 0)) * C
            y = (cy + _substream(base, 1)) * C
            ok = (x < self.Wum) & (y < self.Hum)
            x, y, base = x[ok], y[ok], base[ok]
            ok = self.region_points(x, y) == k
            x, y, base = x[ok], y[ok], base[ok]
            ok = self.in_tissue_points(x, y)
            x, y, base = x[ok], y[ok], base[ok]
            if len(x) == 0:
                continue
            # cell type from the region's mixture
            types = np.array([m[0] for m in spec.mixture])
            cum = np.cumsum([m[1] for m in spec.mixture])
            ctype = types[np.minimum(np.searchsorted(cum / cum[-1], _substream(base, 2), side="right"),
                                     len(types) - 1)].astype(np.int8)
            parts.append(self._shapes(x, y, ctype, np.full(len(x), k, np.int8), base))
        d = _concat(parts)
        if len(d["x"]) and self.gland_code >= 0:
            d = self._exclude_glands(d)
        return d

    def _shapes(self, x, y, ctype, region, base) -> dict:
        n = len(x)
        L = np.empty(n)
        W = np.empty(n)
        harm = np.zeros((n, 4))
        n1, n2 = _normal(base, 3), _normal(base, 5)
        u1 = _substream(base, 7)
        hu = np.stack([_substream(base, 10 + j) for j in range(4)], 1)
        m = ctype == LYM
        D = np.clip(7.0 + 0.45 * n1[m], 5.8, 8.4)
        asp = 0.82 + 0.16 * u1[m]
        L[m], W[m] = D / np.sqrt(asp), D * np.sqrt(asp)
        harm[m] = 0.025 * hu[m]
        m = ctype == FIB
        L[m] = np.clip(15.0 + 2.0 * n1[m], 10.0, 21.0)
        W[m] = np.clip(3.0 + 0.35 * n2[m], 2.2, 3.8)
        harm[m] = hu[m] * np.array([0.0, 0.04, 0.01, 0.01])
        m = ctype == TUM
        D = np.clip(np.exp(np.log(13.2) + 0.17 * n1[m]), 9.5, 19.0)
        asp = 0.68 + 0.32 * u1[m]
        L[m], W[m] = D / np.sqrt(asp), D * np.sqrt(asp)
        harm[m] = np.sqrt(hu[m]) * np.array([0.10, 0.10, 0.08, 0.05])
        # orientation: spindles follow the collagen flow, round nuclei are random
        angle = np.pi * _substream(base, 20)
        fib = ctype == FIB
        if fib.any():
            angle[fib] = self.flow_angle_points(x[fib], y[fib]) + np.deg2rad(7.0) * _normal(base[fib], 21)
        # hard-core radius: the mean radius for round nuclei; spindles are covered by 3 discs (see _discs)
        hs = harm.sum(axis=1)
        rc = np.where(fib, np.maximum(W / 2, L / 6) * (1 + hs), np.sqrt(L * W) / 2 * (1 + 0.5 * hs))
        return dict(x=x, y=y, ctype=ctype, region=region, L=L.astype(np.float32), W=W.astype(np.float32),
                    angle=angle.astype(np.float32), harm=harm.astype(np.float32),
                    hphase=np.zeros((n, 4), np.float32), rc=rc.astype(np.float32),
                    gap=TYPE_GAP[ctype].astype(np.float32), hema=np.zeros(n, np.float32),
                    nucl=np.zeros((n, 4), np.float32), gland=np.zeros(n, np.int64),
                    prio=_substream(base, 8), base=base)

    def _exclude_glands(self, d: dict) -> dict:
        y0, y1 = float(d["y"].min()), float(d["y"].max())
        g = self.glands_in_band(y0, y1)
        if len(g["x"]) == 0:
            return d
        tree = cKDTree(np.column_stack([g["x"], g["y"]]))
        pts = np.column_stack([d["x"], d["y"]])
        lists = tree.query_ball_point(pts, r=GLAND_MAX_R + 15.0)
        counts = np.fromiter((len(li) for li in lists), np.int64, len(lists))
        if counts.sum() == 0:
            return d
        ci = np.repeat(np.arange(len(pts)), counts)
        gi = np.fromiter((j for li in lists for j in li), np.int64, counts.sum())
        dx, dy = d["x"][ci] - g["x"][gi], d["y"][ci] - g["y"][gi]
        rho, phi = np.hypot(dx, dy), np.arctan2(dy, dx)
        inside = rho < self.gland_radius(g, gi, phi) + d["rc"][ci] + 1.5
        bad = np.zeros(len(pts), bool)
        bad[ci[inside]] = True
        return _take(d, ~bad)

    @staticmethod
    def _discs(d: dict):
        """Discs covering each nucleus: one for round nuclei, three along the axis for spindles.

        Returns (owner index, x, y, radius, gap) per disc.
        """
        n = len(d["x"])
        spindle = d["ctype"] == FIB
        k = np.where(spindle, 3, 1)
        owner = np.repeat(np.arange(n), k)
        pos = np.arange(len(owner)) - np.repeat(np.cumsum(k) - k, k)   # 0, 1, 2 within a nucleus
        t = np.where(np.repeat(spindle, k), pos - 1.0, 0.0)              # -1, 0, +1 along the axis
        rc = d["rc"][owner].astype(np.float64)
        off = t * np.maximum(d["L"][owner] / 2 - rc, 0.0)
        ang = d["angle"][owner].astype(np.float64)
        return (owner, d["x"][owner] + off * np.cos(ang), d["y"][owner] + off * np.sin(ang), rc,
                d["gap"][owner].astype(np.float64))

    @classmethod
    def _conflicts_with(cls, d: dict, fixed: dict) -> np.ndarray:
        """Boolean mask of candidates in ``d`` that collide with any nucleus of ``fixed``."""
        bad = np.zeros(len(d["x"]), bool)
        if len(d["x"]) == 0 or len(fixed["x"]) == 0:
            return bad
        oa, xa, ya, ra, ga = cls._discs(d)
        ob, xb, yb, rb, gb = cls._discs(fixed)
        rmax = float(ra.max() + rb.max() + max(ga.max(), gb.max(), 0.0))
        ta = cKDTree(np.column_stack([xa, ya]))
        tb = cKDTree(np.column_stack([xb, yb]))
        sdm = ta.sparse_distance_matrix(tb, rmax, output_type="ndarray")
        if len(sdm) == 0:
            return bad
        i, j, dist = sdm["i"], sdm["j"], sdm["v"]
        lim = ra[i] + rb[j] + 0.5 * (ga[i] + gb[j])
        bad[oa[i[dist < lim]]] = True
        return bad

    @classmethod
    def _hard_core(cls, d: dict) -> dict:
        """Greedy maximal independent set in decreasing priority (= random sequential adsorption)."""
        n = len(d["x"])
        if n < 2:
            return d
        own, xd, yd, rd, gd = cls._discs(d)
        rmax = float(2 * rd.max() + max(gd.max(), 0.0))
        pairs = cKDTree(np.column_stack([xd, yd])).query_pairs(rmax, output_type="ndarray")
        if len(pairs) == 0:
            return d
        a, b = pairs[:, 0], pairs[:, 1]
        dist = np.hypot(xd[a] - xd[b], yd[a] - yd[b])
        c = (dist < rd[a] + rd[b] + 0.5 * (gd[a] + gd[b])) & (own[a] != own[b])
        i, j = own[a[c]], own[b[c]]
        prio = d["prio"]
        status = np.zeros(n, np.int8)  # 0 undecided, 1 kept, -1 removed
        while len(i):
            nbmax = np.full(n, -1.0)
            np.maximum.at(nbmax, i, prio[j])
            np.maximum.at(nbmax, j, prio[i])
            win = (status == 0) & (prio > nbmax)
            status[win] = 1
            lose = np.zeros(n, bool)
            lose[i[win[j]]] = True
            lose[j[win[i]]] = True
            status[lose & (status == 0)] = -1
            alive = (status[i] == 0) & (status[j] == 0)
            i, j = i[alive], j[alive]
        return _take(d, status >= 0)

    def _finish(self, d: dict) -> dict:
        """Draw the attributes that the hard core does not need (orientation, colour, nucleolus)."""
        if len(d["x"]) == 0:
            d = dict(d)
            d.pop("base", None)
            return d
        base = d.pop("base")
        ctype = d["ctype"]
        n = len(ctype)
        d["hphase"] = np.stack([2 * np.pi * _substream(base, 24 + j) for j in range(4)], 1).astype(np.float32)
        u = _substream(base, 30)
        lo = np.array([1.0, 1.45, 1.7, 0.95])[ctype]
        span = np.array([0.2, 0.25, 0.3, 0.8])[ctype]
        d["hema"] = (lo + span * u).astype(np.float32)
        d["nucl"] = self._nucleolus(base, ctype, d["L"], d["W"])
        assert len(d["x"]) == n
        return d

    def _even_row_darts(self, cy: int) -> dict:
        if cy in self._even_darts:
            return self._even_darts[cy]
        if cy < 0 or cy >= self.ncy:
            out = _empty_nuclei()
        else:
            p0 = self._hard_core(self._darts(cy, 0))
            p1 = self._darts(cy, 1)
            p1 = self._hard_core(_take(p1, ~self._conflicts_with(p1, p0)))
            out = _concat([p0, p1])
        self._even_darts[cy] = out
        return out

    def _row(self, cy: int) -> dict:
        if cy in self._rows:
            return self._rows[cy]
        C = self.cell
        if cy % 2 == 0:
            darts = self._even_row_darts(cy)
        else:
            fixed = _concat([self._even_row_darts(cy - 1), self._even_row_darts(cy + 1)])
            p2 = self._darts(cy, 0)
            p2 = self._hard_core(_take(p2, ~self._conflicts_with(p2, fixed)))
            p3 = self._darts(cy, 1)
            p3 = _take(p3, ~self._conflicts_with(p3, _concat([fixed, p2])))
            darts = _concat([p2, self._hard_core(p3)])
        darts = self._finish(dict(darts))
        # gland epithelium whose centre falls in this row
        g_lo = math.floor((cy * C - GLAND_MAX_R) / GLAND_CELL_UM)
        g_hi = math.floor(((cy + 1) * C + GLAND_MAX_R) / GLAND_CELL_UM)
        gparts = []
        for gy in range(max(g_lo, 0), min(g_hi, self.ngy - 1) + 1):
            gn = self.gland_row(gy)["nuclei"]
            sel = (gn["y"] >= cy * C) & (gn["y"] < (cy + 1) * C)
            gparts.append(_take(gn, sel))
        gn = _concat(gparts)
        if len(gn["x"]):
            order = np.lexsort((gn["y"], gn["x"]))
            gn = _take(gn, order)
        darts.pop("base", None)
        row = _concat([gn, darts]) if len(darts["x"]) else gn
        row.pop("base", None)
        row.pop("prio", None)
        self._rows[cy] = row
        return row

    def _ensure_counts(self, cy: int) -> None:
        """Generate rows in order until the id offsets of rows <= cy are known."""
        while len(self._row_counts) <= min(cy, self.ncy - 1):
            r = len(self._row_counts)
            row = self._row(r)
            self._row_counts.append(len(row["x"]))
            self.table_parts.append(dict(ctype=row["ctype"], region=row["region"], gland=row["gland"],
                                         L=row["L"], W=row["W"], angle=row["angle"]))

    @property
    def reach(self) -> float:
        """No pixel of a nucleus lies further than this (µm) from its centre."""
        return REACH_UM + 2 * self.mpp

    def nuclei_band(self, y0: float, y1: float) -> dict:
        """All nuclei whose pixels may reach into [y0, y1) µm, with their global ids (1..N)."""
        C = self.cell
        lo = max(math.floor((y0 - self.reach) / C), 0)
        hi = min(math.floor((y1 + self.reach) / C), self.ncy - 1)
        if hi < lo:
            d = _empty_nuclei()
            d.pop("prio")
            d["id"] = np.zeros(0, np.int64)
            return d
        self._ensure_counts(hi)
        offsets = np.concatenate([[0], np.cumsum(self._row_counts)])
        parts = []
        for cy in range(lo, hi + 1):
            row = dict(self._row(cy))
            row["id"] = offsets[cy] + 1 + np.arange(len(row["x"]), dtype=np.int64)
            parts.append(row)
        return _concat(parts) if any(len(p["x"]) for p in parts) else parts[0]

    def release_below(self, y_um: float) -> None:
        """Forget generated rows that no band starting at or below ``y_um`` can need again."""
        cy_min = math.floor((y_um - self.reach) / self.cell) - 2
        for cy in [c for c in self._rows if c < cy_min]:
            del self._rows[cy]
        for cy in [c for c in self._even_darts if c < cy_min]:
            del self._even_darts[cy]
        self.release_glands_below(y_um - self.cell * 2)

    @property
    def n_generated(self) -> int:
        return int(sum(self._row_counts))

    def all_counts(self) -> None:
        self._ensure_counts(self.ncy - 1)
