"""One photograph of a rendered lesion: pose, the patient's skin, hair, exposure, the dermoscope's field,
sensor noise; then a JPEG at a fixed quality (no timestamps: the same pixels give the same bytes).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

from . import textures as tx

def _transform(channels: np.ndarray, size: int, angle: float, scale: float, shift: tuple[float, float],
               fill: float) -> np.ndarray:
    """Rotate / zoom / shift a float HxWxC stack about the image centre (bilinear)."""
    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    cx = cy = size / 2
    tx, ty = shift[0] * size, shift[1] * size
    # output (u, v) -> input (x, y) = centre + R(-angle)/scale * (out - centre - t)
    a, b = c, s
    d, e = -s, c
    coeffs = (a, b, cx - a * (cx + tx) - b * (cy + ty), d, e, cy - d * (cx + tx) - e * (cy + ty))
    out = np.empty_like(channels)
    for i in range(channels.shape[2]):
        img = Image.fromarray(np.ascontiguousarray(channels[:, :, i]), "F")
        out[:, :, i] = np.asarray(img.transform((size, size), Image.AFFINE, coeffs, Image.BILINEAR,
                                                fillcolor=fill if i == 3 else None))
    return out


def photograph(layer: tuple[np.ndarray, np.ndarray], lesion: dict, size: int,
               rng: np.random.Generator) -> np.ndarray:
    """The lesion on the patient's skin, as a uint8 RGB image, with this photograph's variations."""
    rgb, alpha = layer
    stack = np.concatenate([rgb, alpha[..., None]], axis=2)
    shift = tuple(np.clip(rng.normal(0, 0.04, 2), -0.1, 0.1))
    stack = _transform(stack, size, rng.uniform(0, 2 * np.pi), rng.uniform(0.92, 1.08), shift, 0.0)
    rgb, alpha = stack[:, :, :3], np.clip(stack[:, :, 3:], 0, 1)

    f32 = np.float32
    tone = lesion["tone"].astype(f32)
    shading = 1 + f32(0.05) * tx.value_noise(rng, size, 3)
    furrows = f32(0.025) * tx.value_noise(rng, size, max(8, size // 5))
    redness = f32(10) * np.clip(tx.value_noise(rng, size, 5), 0, None)
    skin = tone * (shading + furrows)[..., None]
    skin[:, :, 0] += redness
    image = skin + (rgb - skin) * alpha

    hairs = int(rng.integers(2, 14)) if lesion["hairy"] else int(rng.random() < 0.1)
    if hairs:
        image = _hair(rng, image, size, hairs)
    image *= (rng.uniform(0.9, 1.1) * rng.uniform(0.96, 1.04, 3)).astype(f32)
    if rng.random() < 0.3:  # dermoscope's circular field: dark corners
        r = tx.canvas_grid(size)[2]
        ring = np.clip((r - f32(rng.uniform(0.46, 0.56))) / f32(0.02), 0, 1)[..., None]
        image += (f32(rng.uniform(5, 25)) - image) * ring
    image += rng.standard_normal(image.shape, dtype=f32) * f32(3.0)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _hair(rng, image, size, count):
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    t = np.linspace(0, 1, 16)[:, None]
    for _ in range(count):
        p0, p1, p2 = rng.uniform(-0.1, 1.1, (3, 2)) * size
        points = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
        draw.line([tuple(p) for p in points], fill=int(rng.integers(170, 256)),
                  width=max(1, int(round(rng.uniform(0.6, 1.6) * size / 160))))
    mask = np.asarray(canvas, np.float32)[..., None] / 255.0
    colour = np.array([42, 32, 26], np.float32) * rng.uniform(0.7, 1.3)
    return image * (1 - mask) + colour * mask


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=int(quality), optimize=False,
                                        progressive=False, subsampling=0)
    return buffer.getvalue()
