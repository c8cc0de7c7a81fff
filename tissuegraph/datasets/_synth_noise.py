"""Counter-based randomness for the synthetic slide: integer hashing and value noise.

Everything random in the synthetic slide is a pure function of ``(seed, key, integer coordinates)``,
so any part of the slide can be regenerated on its own, in any order, and gives the same numbers.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_MASK64 = (1 << 64) - 1


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (a bijection of uint64 with good avalanche); wraps modulo 2**64.

    Call it on arrays with ndim >= 1 (numpy warns about wrap-around only for scalars).
    """
    x = x ^ (x >> _S30)
    x = x * _C1
    x = x ^ (x >> _S27)
    x = x * _C2
    return x ^ (x >> _S31)


def _mix64_int(x: int) -> int:
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _as_u64(c) -> np.ndarray:
    a = np.atleast_1d(np.asarray(c))
    if a.dtype.kind == "f":
        a = a.astype(np.int64)
    return a.astype(np.int64, copy=False).astype(np.uint64)


def hash_u64(seed: int, key: int, *coords) -> np.ndarray:
    """64-bit hash of ``(seed, key, *coords)``; coords are broadcast integer arrays."""
    h0 = _mix64_int(_mix64_int(int(seed)) ^ _mix64_int(int(key) + 0x9E3779B97F4A7C15))
    shape = np.broadcast_shapes(*(np.shape(c) for c in coords))
    h = np.array([h0], dtype=np.uint64)
    for c in coords:
        h = _mix64(h ^ (_as_u64(c) * _GOLDEN + _C1))
    return h.reshape(shape)


def uniform(seed: int, key: int, *coords) -> np.ndarray:
    """Uniform [0, 1) float64 from the hash of ``(seed, key, *coords)``."""
    h = hash_u64(seed, key, *coords)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def normal(seed: int, key: int, *coords) -> np.ndarray:
    """Standard normal float64 (Box-Muller from two hashed uniforms)."""
    u1 = uniform(seed, key, *coords, 0)
    u2 = uniform(seed, key, *coords, 1)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def _smooth(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def value_noise_grid(seed: int, key: int, xs: np.ndarray, ys: np.ndarray, scale: float,
                     dtype=np.float32) -> np.ndarray:
    """Value noise in [-1, 1] on the rectilinear grid ``ys`` (rows) x ``xs`` (columns).

    Lattice values are hashed at integer multiples of ``scale`` (same units as xs/ys) and interpolated
    with a smoothstep; the evaluation is separable, so it costs a few passes over the output.
    """
    u = np.asarray(xs, dtype=np.float64) / scale
    v = np.asarray(ys, dtype=np.float64) / scale
    ix = np.floor(u).astype(np.int64)
    iy = np.floor(v).astype(np.int64)
    sx = _smooth(u - ix).astype(dtype)
    sy = _smooth(v - iy).astype(dtype)
    x_lo, x_hi = int(ix.min()), int(ix.max()) + 1
    y_lo, y_hi = int(iy.min()), int(iy.max()) + 1
    lat_x = np.arange(x_lo, x_hi + 1)
    lat_y = np.arange(y_lo, y_hi + 1)
    lat = (2.0 * uniform(seed, key, lat_y[:, None], lat_x[None, :]) - 1.0).astype(dtype)
    jx = ix - x_lo
    a = lat[:, jx]
    a += (lat[:, jx + 1] - a) * sx[None, :]          # (ny_lat, W)
    jy = iy - y_lo
    out = a[jy]
    out += (a[jy + 1] - out) * sy[:, None]
    return out


def value_noise_points(seed: int, key: int, x: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
    """Value noise in [-1, 1] at scattered points (same field as :func:`value_noise_grid`), float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return value_noise_coords(seed, key, x / scale, y / scale, dtype=np.float64)


def fbm_grid(seed: int, key: int, xs, ys, scale: float, octaves: int = 2, gain: float = 0.45,
             lacunarity: float = 2.7, dtype=np.float32) -> np.ndarray:
    out = value_noise_grid(seed, key, xs, ys, scale, dtype)
    amp = 1.0
    for o in range(1, octaves):
        amp *= gain
        scale = scale / lacunarity
        out += np.asarray(amp, dtype) * value_noise_grid(seed, key + 7919 * o, xs, ys, scale, dtype)
    return out


def fbm_points(seed: int, key: int, x, y, scale: float, octaves: int = 2, gain: float = 0.45,
               lacunarity: float = 2.7) -> np.ndarray:
    out = value_noise_points(seed, key, x, y, scale)
    amp = 1.0
    for o in range(1, octaves):
        amp *= gain
        scale = scale / lacunarity
        out = out + amp * value_noise_points(seed, key + 7919 * o, x, y, scale)
    return out


def value_noise_coords(seed: int, key: int, u: np.ndarray, v: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Value noise in [-1, 1] at arbitrary lattice coordinates ``(u, v)`` (any shape; lattice step 1).

    For warped or anisotropic noise. The lattice values of the covered range are hashed once into a
    table and gathered, so the cost is a few passes over the output.
    """
    u = np.asarray(u)
    v = np.asarray(v)
    if u.size == 0:
        return np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype)
    iu = np.floor(u)
    iv = np.floor(v)
    su = _smooth((u - iu).astype(dtype))
    sv = _smooth((v - iv).astype(dtype))
    iu = iu.astype(np.int64)
    iv = iv.astype(np.int64)
    u_lo, u_hi = int(iu.min()), int(iu.max()) + 1
    v_lo, v_hi = int(iv.min()), int(iv.max()) + 1
    nu, nv = u_hi - u_lo + 1, v_hi - v_lo + 1
    if nu * nv > 4 * iu.size + 1024:  # sparse points over a huge range: hash directly
        def lat(dv, du):
            return (2.0 * uniform(seed, key, iv + dv, iu + du) - 1.0).astype(dtype)
        a0 = lat(0, 0)
        a0 += (lat(0, 1) - a0) * su
        a1 = lat(1, 0)
        a1 += (lat(1, 1) - a1) * su
    else:
        table = (2.0 * uniform(seed, key, np.arange(v_lo, v_hi + 1)[:, None],
                               np.arange(u_lo, u_hi + 1)[None, :]) - 1.0).astype(dtype).ravel()
        k = (iv - v_lo) * nu + (iu - u_lo)
        a0 = table[k]
        a0 += (table[k + 1] - a0) * su
        a1 = table[k + nu]
        a1 += (table[k + nu + 1] - a1) * su
    a0 += (a1 - a0) * sv
    return a0
