"""Pixel primitives of the synthetic lesions: value noise, fractal noise, lesion outlines, colour mixes,
pigment networks, dots and globules, branching vessels. All float32 on a size x size canvas.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

def precise_f32(ufunc, *arrays) -> np.ndarray:
    """A transcendental ufunc evaluated in float64, the result as float32. NumPy picks float32
    exp/cos/arctan2/pow kernels by CPU (AVX-512 ones differ from AVX2 in the last bit, enough to change
    JPEG bytes); in float64 such a difference rounds away, so the files are the same on every x86 CPU."""
    return ufunc(*(np.asarray(a, np.float64) for a in arrays)).astype(np.float32)


@lru_cache(maxsize=4)
def canvas_grid(size: int):
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size - 0.5
    x, y = np.meshgrid(centres, centres)
    r = np.hypot(x, y).astype(np.float32)
    theta_bin = ((np.arctan2(y, x) + np.pi) / (2 * np.pi) * 720).astype(np.int32) % 720
    x, y = x.astype(np.float32), y.astype(np.float32)
    for a in (x, y, r, theta_bin):
        a.setflags(write=False)
    return x, y, r, theta_bin


def value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise with unit standard deviation and features about size/cells pixels wide."""
    cells = int(max(2, cells))
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    field = np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.BICUBIC))
    return (field - field.mean()) / (field.std() + 1e-6)


def fractal_noise(rng, size, cells, octaves=3) -> np.ndarray:
    total = np.zeros((size, size), np.float32)
    for o in range(octaves):
        total += value_noise(rng, size, cells * 2 ** o) / 2 ** o
    return total / total.std()


def lesion_shape(rng, size, radius, irregular, ragged, edge, elong=None, centre=(0.0, 0.0)):
    """Lesion mask: normalised radial distance d (1 at the border) and a soft alpha."""
    x, y, _, _ = canvas_grid(size)
    k = np.arange(1, 13, dtype=np.float32)
    amp = np.zeros(12, np.float32)
    amp[0] = irregular * rng.uniform(0.0, 0.22)                      # asymmetry (off-centre bulge)
    amp[1] = (rng.uniform(0.0, 0.15) if elong is None else elong) + irregular * rng.uniform(0.0, 0.15)
    amp[2:5] = irregular * rng.uniform(0.0, 0.16, 3) / np.sqrt(k[2:5] / 3)   # lobes
    amp[5:] = ragged * rng.uniform(0.0, 0.07, 7)                     # ragged border
    phase = rng.uniform(0, 2 * np.pi, 12).astype(np.float32)
    angles = np.linspace(-np.pi, np.pi, 720, endpoint=False)
    rho = radius * (1 + (amp[None, :] * precise_f32(np.cos, np.outer(angles, k) + phase[None, :])).sum(1))
    rho = np.maximum(rho, 0.35 * radius)
    dx, dy = x - centre[0], y - centre[1]
    theta_bin = ((precise_f32(np.arctan2, dy, dx) + np.pi) / (2 * np.pi) * 720).astype(np.int32) % 720
    d = precise_f32(np.hypot, dx, dy) / rho[theta_bin]
    if ragged > 0:
        d = d + (0.02 + 0.22 * ragged ** 1.5) * fractal_noise(rng, size, max(4, int(6 / max(radius, 0.05) / 4)))
    alpha = np.clip((1.0 - d) / edge + 0.5, 0.0, 1.0)
    return d.astype(np.float32), alpha.astype(np.float32)


def colour_mix(rng, size, colours, cells=5, sharpness=2.5) -> np.ndarray:
    """Blotchy regions of several colours (soft argmax of noise fields)."""
    colours = np.asarray(colours, np.float32)
    if len(colours) == 1:
        return np.broadcast_to(colours[0], (size, size, 3)).copy()
    fields = np.stack([value_noise(rng, size, cells) for _ in colours]) * sharpness
    fields -= fields.max(0, keepdims=True)
    w = precise_f32(np.exp, fields)
    w /= w.sum(0, keepdims=True)
    return np.tensordot(w, colours, axes=(0, 0)).astype(np.float32)


def pigment_network(rng, size, spacing_px, width=0.22, warp=0.0) -> np.ndarray:
    """A reticular line network: the zero set of smooth noise (1 on the lines, 0 in the holes)."""
    field = value_noise(rng, size, size / spacing_px)
    if warp:
        field = field + warp * value_noise(rng, size, size / spacing_px / 3)
    return precise_f32(np.exp, -(field / width) ** 2)


def scatter_dots(rng, size, n, radius, spread, r_px=(1.0, 2.5), centre=(0.0, 0.0), blur=0.6) -> np.ndarray:
    """n round dots (mask 0..1) scattered within `spread` x radius of the centre."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(n)):
        a, rr = rng.uniform(0, 2 * np.pi), radius * spread * np.sqrt(rng.random())
        cx = (centre[0] + 0.5 + rr * math.cos(a)) * size
        cy = (centre[1] + 0.5 + rr * math.sin(a)) * size
        s = rng.uniform(*r_px) * size / 160
        draw.ellipse([cx - s, cy - s, cx + s, cy + s], fill=255)
    if blur:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur * size / 160))
    return np.asarray(canvas, np.float32) / 255.0


def vessel_trees(rng, size, radius, n_trees, width=1, branch=0.25, step_px=3.0) -> np.ndarray:
    """Arborizing vessels: branching random walks inside the lesion (mask 0..1)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    step = step_px * size / 160
    for _ in range(int(n_trees)):
        a, rr = rng.uniform(0, 2 * np.pi), radius * 0.6 * np.sqrt(rng.random())
        stack = [((0.5 + rr * math.cos(a)) * size, (0.5 + rr * math.sin(a)) * size, rng.uniform(0, 2 * np.pi), 1.0)]
        segments = 0
        while stack and segments < 12:
            px, py, heading, thick = stack.pop()
            points = [(px, py)]
            for _ in range(int(rng.integers(4, 10))):
                heading += rng.normal(0, 0.35)
                px, py = px + step * math.cos(heading), py + step * math.sin(heading)
                points.append((px, py))
                if rng.random() < branch and thick > 0.5:
                    stack.append((px, py, heading + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1), thick * 0.7))
            draw.line(points, fill=int(255 * thick), width=max(1, int(round(width * thick * size / 160))))
            segments += 1
    return np.asarray(canvas, np.float32) / 255.0


def lerp(a, b, t):
    t = t[..., None] if np.ndim(t) == 2 else t
    return a + (b - a) * t
