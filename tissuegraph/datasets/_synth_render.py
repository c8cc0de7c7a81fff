"""Pixels of the synthetic slide: Beer-Lambert H&E rendering of a rectangle of the global layout.

A rectangle is rendered on its own (plus a blur margin), from the global layout only, so the result
does not depend on how the slide is cut into strips or blocks.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from . import _synth_noise as nz
from ._synth_layout import GLAND_MAX_R, Layout

# Ruifrok & Johnston (2001) optical-density vectors, the ones scikit-image's rgb2hed inverts.
RUIFROK_H = np.array([0.65, 0.70, 0.29])
RUIFROK_E = np.array([0.07, 0.99, 0.11])

K_FIBRE, K_BUNDLE, K_TEX1, K_TEX2, K_STAINVAR, K_NOISE = 401, 409, 503, 509, 601, 701
NOISE_BLOCK = 64
NOISE_TEXTURE = 1024
GLASS_OD = 0.035

# background stain concentrations per region class: (H, E)
_BG = {
    "gland": (0.07, 0.20),   # lamina propria
    "stroma": (0.035, 0.06),  # + collagen fibres
    "immune": (0.17, 0.15),
    "tumour": (0.12, 0.28),
}
# per cell type: chromatin texture amplitude (fine, coarse), membrane rim strength
_CHROMA_FINE = np.array([0.22, 0.10, 0.10, 0.25], np.float32)
_CHROMA_COARSE = np.array([0.12, 0.05, 0.05, 0.30], np.float32)
_RIM = np.array([0.30, 0.10, 0.15, 0.45], np.float32)


class Renderer:
    def __init__(self, layout: Layout, *, stain: np.ndarray, stain_intensity: float, blur_um: float,
                 noise: float):
        self.layout = layout
        self.mpp = layout.mpp
        self.seed = layout.seed
        self.stain = np.asarray(stain, np.float32)  # (2, 3): hematoxylin, eosin OD per unit concentration
        self.stain_intensity = float(stain_intensity)
        self.blur_px = float(blur_um) / self.mpp
        self.noise = float(noise)
        self.margin = int(4.0 * self.blur_px + 0.5) + 1 if self.blur_px > 0 else 0
        self.classes = layout.region_classes
        self._noise_tex: np.ndarray | None = None

    # ------------------------------------------------------------------ helpers
    def _coords(self, a0: int, a1: int) -> np.ndarray:
        return (np.arange(a0, a1, dtype=np.float64) + 0.5) * self.mpp

    def _fibres(self, xs, ys, need: np.ndarray) -> np.ndarray:
        """Collagen: streaks elongated along the flow (iso-lines of psi), with clefts between bundles.

        Evaluated only where ``need`` is True (zero elsewhere).
        """
        lay = self.layout
        out = np.zeros(need.shape, np.float32)
        rows = np.flatnonzero(need.any(axis=1))
        if len(rows) == 0:
            return out
        cols = np.flatnonzero(need.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        sub = need[r0:r1, c0:c1]
        psi = lay.psi_grid(xs[c0:c1], ys[r0:r1])[sub]
        d0 = lay.psi_dir
        rr, cc = np.nonzero(sub)
        chi = ys[r0:r1][rr] * d0[0] - xs[c0:c1][cc] * d0[1]
        f = nz.value_noise_coords(self.seed, K_FIBRE, psi * (1 / 2.4), chi * (1 / 22.0))
        f *= np.float32(0.6)
        f += np.float32(0.3) * nz.value_noise_coords(self.seed, K_FIBRE + 1, psi * (1 / 1.1), chi * (1 / 9.0))
        f += np.float32(0.5)
        np.clip(f, 0, 1, out=f)
        f *= np.sqrt(f)
        cleft = nz.value_noise_coords(self.seed, K_BUNDLE, psi * (1 / 7.0), chi * (1 / 70.0))
        f *= np.clip((cleft + np.float32(0.5)) * np.float32(1 / 0.2), 0, 1)
        out[r0:r1, c0:c1][sub] = f
        return out

    # ------------------------------------------------------------------ main
    def render(self, y0: int, y1: int, x0: int, x1: int, *, want_regions: bool = False):
        """RGB uint8 (h, w, 3), labels uint32 (h, w) and optionally region codes uint8 (0 = no tissue)."""
        lay = self.layout
        m = self.margin
        Y0, Y1, X0, X1 = y0 - m, y1 + m, x0 - m, x1 + m
        h, w = Y1 - Y0, X1 - X0
        xs, ys = self._coords(X0, X1), self._coords(Y0, Y1)
        f32 = np.float32

        # ---- tissue envelope and regions
        if np.isfinite(lay.threshold):
            # signed distance to the tissue edge in px (first order), antialiased over one pixel; the
            # envelope is evaluated one pixel beyond the block so the gradient is the same in every block
            ext = lay.envelope_grid(self._coords(X0 - 1, X1 + 1), self._coords(Y0 - 1, Y1 + 1))
            env = ext[1:-1, 1:-1] - f32(lay.threshold)
            grad = np.hypot(ext[1:-1, 2:] - ext[1:-1, :-2], ext[2:, 1:-1] - ext[:-2, 1:-1])
            grad *= f32(0.5)
            np.maximum(grad, f32(1e-7), out=grad)
            t_alpha = np.clip(env / grad + f32(0.5), 0, 1)
            del ext, grad
        else:
            env = None
            t_alpha = np.ones((h, w), f32)
        K = len(self.classes)
        if K > 1:
            wts = lay.class_fields_grid(xs, ys)
            fmax = wts[0].copy()
            region = np.zeros((h, w), np.intp)
            for k in range(1, K):
                better = wts[k] > fmax
                region[better] = k
                np.maximum(fmax, wts[k], out=fmax)
            wts -= fmax
            wts *= f32(1.0 / 0.03)
            np.exp(wts, out=wts)
            wts /= wts.sum(axis=0, keepdims=True)
            del fmax
        else:
            region = np.zeros((h, w), np.intp)
            wts = np.ones((1, h, w), f32)

        tex1 = nz.value_noise_grid(self.seed, K_TEX1, xs, ys, 0.9)
        tex2 = nz.value_noise_grid(self.seed, K_TEX2, xs, ys, 2.3)

        # ---- background concentrations
        H = np.zeros((h, w), f32)
        E = np.zeros((h, w), f32)
        fib = None
        fibrous = [k for k, name in enumerate(self.classes) if name in ("stroma", "gland")]
        if fibrous:
            need = (t_alpha > 0) & (sum(wts[k] for k in fibrous) > 1e-4)
            fib = self._fibres(xs, ys, need)
            del need
        for k, name in enumerate(self.classes):
            wk = wts[k]
            if not wk.any():
                continue
            hb, eb = _BG[name]
            if name == "stroma":
                Hk = hb + 0.01 * tex2
                Ek = eb + 0.55 * fib
            elif name == "gland":
                Hk = hb + 0.02 * tex2
                Ek = eb + 0.16 * fib + 0.03 * tex1
            elif name == "immune":
                Hk = hb + 0.04 * tex2
                Ek = eb + 0.03 * tex1
            else:  # tumour
                Hk = hb + 0.03 * tex2
                Ek = eb + 0.06 * tex1 + 0.04 * tex2
            H += wk * Hk
            E += wk * Ek
        del wts, fib

        # ---- glands (epithelial cytoplasm band and white lumen)
        self._draw_glands(H, E, Y0, X0, h, w)

        H *= t_alpha
        E *= t_alpha
        tissue = t_alpha > 0.5
        del env

        # ---- nuclei (cut by the tissue edge like the rest of the section)
        labels = np.zeros((h, w), np.uint32)
        self._draw_nuclei(H, E, labels, tex1, tex2, t_alpha, Y0, X0, h, w)
        del tex1, tex2, t_alpha

        # ---- Beer-Lambert
        var = nz.value_noise_grid(self.seed, K_STAINVAR, xs, ys, 600.0)
        var *= f32(0.08)
        var += f32(1.0)
        var *= f32(self.stain_intensity)
        H *= var
        E *= var
        del var
        rgb = np.empty((h, w, 3), f32)
        for c in range(3):
            od = H * self.stain[0, c]
            od += E * self.stain[1, c]
            od += f32(GLASS_OD)
            np.negative(od, out=od)
            np.exp(od, out=od)
            od *= f32(255.0)
            if self.blur_px > 0:
                od = gaussian_filter(od, self.blur_px, truncate=4.0, mode="nearest")
            rgb[..., c] = od
        del H, E
        sl = (slice(m, m + (y1 - y0)), slice(m, m + (x1 - x0)))
        rgb = rgb[sl]
        if self.noise > 0:
            rgb += self._noise(y0, y1, x0, x1) * f32(255.0 * self.noise)
        out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        labels = labels[sl]
        if want_regions:
            reg = np.where(tissue[sl], region[sl] + 1, 0).astype(np.uint8)
            return out, labels, reg
        return out, labels

    def _noise_texture(self) -> np.ndarray:
        if self._noise_tex is None:
            rng = np.random.default_rng([self.seed & ((1 << 63) - 1), K_NOISE])
            self._noise_tex = rng.standard_normal((NOISE_TEXTURE, NOISE_TEXTURE, 3), dtype=np.float32)
        return self._noise_tex

    def _noise(self, y0, y1, x0, x1) -> np.ndarray:
        """White Gaussian noise: each fixed NOISE_BLOCK block of the slide is a window of a per-seed noise
        texture at an offset hashed from the block's position (so it does not depend on the strips)."""
        B = NOISE_BLOCK
        tex = self._noise_texture()
        by0, by1 = y0 // B, (y1 - 1) // B
        bx0, bx1 = x0 // B, (x1 - 1) // B
        bys = np.arange(by0, by1 + 1)
        bxs = np.arange(bx0, bx1 + 1)
        span = NOISE_TEXTURE - B + 1
        h = nz.hash_u64(self.seed, K_NOISE, bys[:, None], bxs[None, :])
        oy = (h % np.uint64(span)).astype(np.int64)
        ox = ((h >> np.uint64(32)) % np.uint64(span)).astype(np.int64)
        out = np.empty((len(bys) * B, len(bxs) * B, 3), np.float32)
        for i in range(len(bys)):
            for j in range(len(bxs)):
                out[i * B:(i + 1) * B, j * B:(j + 1) * B] = tex[oy[i, j]:oy[i, j] + B, ox[i, j]:ox[i, j] + B]
        ry, rx = y0 - by0 * B, x0 - bx0 * B
        return out[ry:ry + (y1 - y0), rx:rx + (x1 - x0)]

    def _draw_glands(self, H, E, Y0, X0, h, w) -> None:
        lay = self.layout
        mpp = self.mpp
        g = lay.glands_in_band(Y0 * mpp, (Y0 + h) * mpp)
        if len(g["x"]) == 0:
            return
        f32 = np.float32
        for i in range(len(g["x"])):
            R = GLAND_MAX_R + 2 * mpp
            gx0 = max(int(math.floor((g["x"][i] - R) / mpp)), X0)
            gx1 = min(int(math.ceil((g["x"][i] + R) / mpp)) + 1, X0 + w)
            gy0 = max(int(math.floor((g["y"][i] - R) / mpp)), Y0)
            gy1 = min(int(math.ceil((g["y"][i] + R) / mpp)) + 1, Y0 + h)
            if gx1 <= gx0 or gy1 <= gy0:
                continue
            dx = (np.arange(gx0, gx1) + 0.5) * mpp - g["x"][i]
            dy = (np.arange(gy0, gy1) + 0.5) * mpp - g["y"][i]
            rho = np.hypot(dx[None, :], dy[:, None])
            phi = np.arctan2(dy[:, None], dx[None, :])
            ro = Layout.gland_radius(g, i, phi)
            rl = ro * Layout.lumen_fraction(g, i)
            a_out = np.clip((ro - rho) / mpp + 0.5, 0, 1).astype(f32)
            a_lum = np.clip((rl - rho) / mpp + 0.5, 0, 1).astype(f32)
            # thin dense basement membrane just outside the epithelium
            basal = np.exp(-((rho - ro - 0.6) / 0.8) ** 2).astype(f32)
            sl = (slice(gy0 - Y0, gy1 - Y0), slice(gx0 - X0, gx1 - X0))
            h_epi = f32(0.07) * (1 - a_lum) + f32(0.0) * a_lum
            e_epi = f32(0.40) * (1 - a_lum) + f32(0.03) * a_lum
            H[sl] = H[sl] * (1 - a_out) + a_out * h_epi
            E[sl] = (E[sl] * (1 - a_out) + a_out * e_epi) + f32(0.12) * basal * (1 - a_out)

    def _draw_nuclei(self, H, E, labels, tex1, tex2, t_alpha, Y0, X0, h, w) -> None:
        lay = self.layout
        mpp = self.mpp
        d = lay.nuclei_band(Y0 * mpp, (Y0 + h) * mpp)
        if len(d["x"]) == 0:
            return
        cx = d["x"] / mpp - 0.5
        cy = d["y"] / mpp - 0.5
        R = (d["L"].astype(np.float64) / 2 * (1 + d["harm"].sum(axis=1)) + 1.0 * mpp) / mpp + 1.0
        keep = (cx + R >= X0) & (cx - R < X0 + w) & (cy + R >= Y0) & (cy - R < Y0 + h)
        if not keep.any():
            return
        sel = np.flatnonzero(keep)
        S = (2 * np.ceil(R[sel]) + 1).astype(np.int64)
        S = ((S + 3) // 4) * 4
        alpha_img = np.zeros(h * w, np.float32)
        hn_img = np.zeros(h * w, np.float32)
        lab_flat = labels.reshape(-1)
        t1f, t2f, taf = tex1.reshape(-1), tex2.reshape(-1), t_alpha.reshape(-1)
        for s in np.unique(S):
            idx = sel[S == s]
            # bound the temporary size
            step = max(1, 400_000 // (s * s))
            for b in range(0, len(idx), step):
                self._patch_batch(d, idx[b:b + step], int(s), cx, cy, alpha_img, hn_img, lab_flat,
                                  t1f, t2f, taf, Y0, X0, h, w)
        a = alpha_img.reshape(h, w)
        H *= 1 - a
        H += hn_img.reshape(h, w)
        E *= 1 - np.float32(0.75) * a
        E += np.float32(0.05) * a

    def _patch_batch(self, d, idx, S, cx, cy, alpha_img, hn_img, lab_flat, t1f, t2f, taf, Y0, X0, h, w):
        mpp = self.mpp
        f32 = np.float32
        ccx, ccy = cx[idx], cy[idx]
        ox = np.floor(ccx).astype(np.int64) - S // 2
        oy = np.floor(ccy).astype(np.int64) - S // 2
        ar = np.arange(S)
        cols = ox[:, None] + ar[None, :]          # (n, S) absolute px
        rows = oy[:, None] + ar[None, :]
        dx = (cols - ccx[:, None]).astype(f32)[:, None, :]   # (n, 1, S)
        dy = (rows - ccy[:, None]).astype(f32)[:, :, None]   # (n, S, 1)
        th = d["angle"][idx].astype(f32)
        c, s_ = np.cos(th)[:, None, None], np.sin(th)[:, None, None]
        u = dx * c + dy * s_
        v = dy * c - dx * s_
        a = (d["L"][idx] / (2 * mpp)).astype(f32)[:, None, None]
        b = (d["W"][idx] / (2 * mpp)).astype(f32)[:, None, None]
        rho = np.sqrt(u * u + v * v)
        q = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        safe = np.maximum(rho, f32(1e-6))
        z = (u / safe) + 1j * (v / safe)
        z = z.astype(np.complex64)
        harm = d["harm"][idx]
        hph = d["hphase"][idx]
        pert = np.ones_like(q)
        zk = z * z
        for j in range(4):  # harmonics k = 2..5
            ck = (harm[:, j] * np.exp(-1j * hph[:, j])).astype(np.complex64)[:, None, None]
            pert += (zk * ck).real
            zk = zk * z
        sn = q / np.maximum(pert, f32(0.2))                     # < 1 inside
        dist = rho * (1 / np.maximum(sn, f32(1e-3)) - 1)        # px to the boundary along the ray
        dist = np.minimum(dist, f32(50.0))
        alpha = np.clip(dist + f32(0.5), 0, 1)
        inside = sn < 1
        # block-local flat indices
        lr = rows - Y0
        lc = cols - X0
        okr = (lr >= 0) & (lr < h)
        okc = (lc >= 0) & (lc < w)
        flat = (np.clip(lr, 0, h - 1)[:, :, None] * w + np.clip(lc, 0, w - 1)[:, None, :])
        ta = taf[flat]
        alpha *= ta
        inside &= ta > 0.5
        valid = (alpha > 0) & okr[:, :, None] & okc[:, None, :]
        ct = d["ctype"][idx]
        tex = (_CHROMA_FINE[ct][:, None, None] * t1f[flat] + _CHROMA_COARSE[ct][:, None, None] * t2f[flat])
        dist_um = dist * f32(mpp)
        rim = np.exp(-(dist_um / f32(0.7)) ** 2) * _RIM[ct][:, None, None]
        val = d["hema"][idx][:, None, None] * (1 + tex) * (1 + rim)
        nu = d["nucl"][idx]
        has = nu[:, 3] > 0
        if has.any():
            ncx = (nu[:, 0] * np.cos(th) - nu[:, 1] * np.sin(th)) / mpp
            ncy = (nu[:, 0] * np.sin(th) + nu[:, 1] * np.cos(th)) / mpp
            rr = np.sqrt((dx - ncx[:, None, None]) ** 2 + (dy - ncy[:, None, None]) ** 2) * f32(mpp)
            spot = np.clip((nu[:, 2][:, None, None] - rr) / f32(0.35) + 0.5, 0, 1)
            val = val + nu[:, 3][:, None, None] * spot * inside
        ids = np.broadcast_to(d["id"][idx].astype(np.uint32)[:, None, None], alpha.shape)
        fv = flat[valid]
        np.maximum.at(alpha_img, fv, alpha[valid])
        np.maximum.at(hn_img, fv, (alpha * val)[valid])
        vin = valid & inside
        np.maximum.at(lab_flat, flat[vin], ids[vin])
