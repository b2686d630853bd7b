"""One renderer per kind of lesion: (rgb float32 S x S x 3, alpha float32 S x S) on a centred canvas.

Each draws from the lesion's own seed, so a lesion looks the same in every photograph of it.
"""

from __future__ import annotations

import math

import numpy as np

from . import textures as tx

# Colours (sRGB 0..255)
C = {k: np.array(v, dtype=np.float32) for k, v in {
    "light_brown": (172, 122, 86), "brown": (135, 86, 56), "dark_brown": (88, 55, 36),
    "black": (38, 30, 30), "blue_grey": (88, 98, 122), "red": (170, 70, 66), "white": (212, 198, 194),
    "pink": (228, 170, 166), "pearl": (236, 214, 212), "vessel": (168, 24, 40), "keratin": (236, 224, 190),
    "scc_red": (204, 104, 94), "tan": (190, 146, 108), "purple": (118, 24, 62), "crimson": (178, 34, 62),
    "navy": (48, 42, 80), "blue_black": (30, 26, 44),
}.items()}


def render_lesion(lesion: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(lesion["render_seed"])
    kind, m = lesion["diagnosis"].kind, lesion["m"]
    radius = float(np.clip(0.5 * lesion["diameter"] / lesion["fov_mm"], 0.06, 0.40))
    rgb, alpha = RENDERERS[kind](rng, size, m, radius)
    shade = float(np.clip((lesion["tone"].mean() / 190.0) ** 0.5, 0.65, 1.08))
    return np.clip(rgb * shade, 0, 255).astype(np.float32), alpha


def _melanocytic(rng, size, m, radius, extra_colours, n_extra, network_strength=0.22, weights=None):
    irregular, ragged = 0.15 + 0.85 * m, m ** 1.3
    d, alpha = tx.lesion_shape(rng, size, radius, irregular, ragged, edge=rng.uniform(0.05, 0.10 + 0.12 * m))
    base = C["brown"] * rng.uniform(0.85, 1.15)
    rgb = tx.lerp(base * 0.72, base * 1.18, tx.precise_f32(np.power, np.clip(d, 0, 1), 1.5))       # darker centre
    if n_extra > 0:
        p = None if weights is None else np.asarray(weights, float) / np.sum(weights)
        names = list(rng.choice(extra_colours, size=min(n_extra, len(extra_colours)), replace=False, p=p))
        blotches = tx.colour_mix(rng, size, [rgb.mean((0, 1))] + [C[c] for c in names], cells=4 + int(3 * m),
                        sharpness=2.0 + 2.0 * m)
        weight = np.clip(0.45 + 0.5 * m, 0, 0.95)
        rgb = rgb * (1 - weight) + blotches * weight
    spacing = rng.uniform(6, 9) * size / 160
    net = tx.pigment_network(rng, size, spacing, width=0.18 + 0.2 * m, warp=1.5 * m)
    if m > 0.4:  # atypical network: broken, thick in places
        net *= np.clip(tx.value_noise(rng, size, 5) + 0.6, 0, 1)
    rgb = rgb * (1 - network_strength * net * np.clip(1.1 - d, 0, 1))[..., None]
    if m > 0.3:  # irregular dots and globules towards the periphery
        dots = tx.scatter_dots(rng, size, rng.integers(3, 4 + int(14 * m)), radius, 1.05, (1.0, 2.5 + 2 * m))
        rgb = tx.lerp(rgb, C["dark_brown"] * 0.8, dots * 0.8)
    return rgb, alpha


def _nevus(rng, size, m, radius):
    n_extra = int(np.clip(round(2.2 * m + rng.normal(0, 0.4)), 0, 2))
    return _melanocytic(rng, size, m * 0.8, radius, ["light_brown", "dark_brown", "tan"], n_extra)


def _atypical(rng, size, m, radius):
    return _melanocytic(rng, size, m, radius, ["light_brown", "dark_brown", "black", "tan"],
                        int(rng.integers(1, 3)))


def _melanoma(rng, size, m, radius, invasive=0.5):
    n_extra = int(np.clip(round(0.6 + 3.2 * m + invasive + rng.normal(0, 0.6)), 0, 5))
    pool = ["dark_brown", "light_brown", "black", "blue_grey", "red", "white"]
    atypical = 0.2 + 1.5 * m  # the archetypal melanoma colours grow more likely with atypia
    weights = [1.0, 0.8, atypical, atypical, 0.7 * atypical, 0.5 * atypical]
    rgb, alpha = _melanocytic(rng, size, m, radius, pool, n_extra, network_strength=0.3, weights=weights)
    if rng.random() < 0.3 + 0.5 * invasive:  # blue-white veil over part of the lesion
        veil = np.clip(tx.value_noise(rng, size, 3) - 0.2, 0, 1) * np.clip(1.2 - tx.canvas_grid(size)[2] / radius, 0, 1)
        rgb = tx.lerp(rgb, C["blue_grey"], veil * 0.7)
    return rgb, alpha


def _melanoma_invasive(rng, size, m, radius):
    return _melanoma(rng, size, m, radius, invasive=1.0)


def _melanoma_in_situ(rng, size, m, radius):
    return _melanoma(rng, size, 0.85 * m, radius, invasive=0.0)


def _metastasis(rng, size, m, radius):
    radius = min(radius, 0.2)
    d, alpha = tx.lesion_shape(rng, size, radius, 0.1 + 0.2 * m, 0.1, edge=rng.uniform(0.15, 0.3), elong=0.05)
    rgb = tx.lerp(C["blue_black"], C["navy"] * rng.uniform(0.9, 1.2), np.clip(d, 0, 1) ** 2)
    halo = np.clip(1.6 - tx.canvas_grid(size)[2] / radius, 0, 1) * 0.35  # bluish halo around the nodule
    alpha = np.maximum(alpha, halo)
    if rng.random() < 0.8:  # satellite nodules
        for _ in range(int(rng.integers(1, 4))):
            a, rr = rng.uniform(0, 2 * np.pi), radius * rng.uniform(1.4, 2.4)
            centre = (rr * math.cos(a), rr * math.sin(a))
            _, a2 = tx.lesion_shape(rng, size, radius * rng.uniform(0.25, 0.5), 0.1, 0.0, edge=0.3, centre=centre)
            alpha = np.maximum(alpha, a2 * 0.9)
    glare = tx.scatter_dots(rng, size, 1, radius * 0.3, 1.0, (1.0, 2.0), blur=1.0)
    rgb = tx.lerp(rgb, C["white"], glare * 0.7)
    rgb = tx.lerp(rgb, C["vessel"], tx.value_noise(rng, size, 10).clip(1.2, 2.0) - 1.2)  # a few red specks
    return rgb, alpha * 0.97


def _bcc(rng, size, m, radius):
    d, alpha = tx.lesion_shape(rng, size, radius, 0.35 + 0.5 * m, 0.25 * m, edge=rng.uniform(0.06, 0.15))
    if rng.random() < 0.3:  # pigmented BCC: brown, the look-alike of benign pigmented lesions
        rgb = tx.colour_mix(rng, size, [C["light_brown"], C["pink"], C["brown"]], cells=5)
    else:
        rgb = tx.colour_mix(rng, size, [C["pink"], C["pearl"], C["pink"] * 0.95], cells=5)
    nests = tx.scatter_dots(rng, size, rng.integers(0, 2 + int(5 * m)), radius, 0.8, (2.0, 5.0), blur=1.5)
    rgb = tx.lerp(rgb, C["blue_grey"], np.clip(nests * 1.3, 0, 0.85))
    vessels = tx.vessel_trees(rng, size, radius, rng.integers(2, 5), width=1.5)
    rgb = tx.lerp(rgb, C["vessel"], vessels * 0.95)
    if rng.random() < 0.3:  # ulceration
        ulcer = np.clip(tx.value_noise(rng, size, 6) - 1.0, 0, 1) * (d < 0.6)
        rgb = tx.lerp(rgb, np.array([120, 40, 32], np.float32), np.clip(ulcer * 2, 0, 1))
    return rgb, alpha * rng.uniform(0.75, 0.9)


def _scc(rng, size, m, radius, keratin=0.6):
    d, alpha = tx.lesion_shape(rng, size, radius, 0.3 + 0.5 * m, 0.4 * m, edge=rng.uniform(0.12, 0.25))
    rgb = tx.colour_mix(rng, size, [C["scc_red"], C["red"], C["pink"]], cells=5)
    scale = np.clip(tx.fractal_noise(rng, size, 8) - (1.0 - keratin), 0, 1) * np.clip(1.1 - d, 0, 1)
    rgb = tx.lerp(rgb, C["keratin"], np.clip(scale * 1.4, 0, 0.95))
    dots = tx.scatter_dots(rng, size, rng.integers(10, 30), radius, 0.9, (0.8, 1.6), blur=0.4)
    rgb = tx.lerp(rgb, C["vessel"], dots * 0.9)
    return rgb, alpha * 0.92


def _keratoacanthoma(rng, size, m, radius):
    d, alpha = tx.lesion_shape(rng, size, radius, 0.15, 0.1, edge=0.15, elong=0.05)
    rgb = tx.lerp(C["pink"], C["scc_red"], np.clip(d, 0, 1))
    crater = np.clip((0.55 - d) * 6 + tx.value_noise(rng, size, 8) * 0.3, 0, 1)
    rgb = tx.lerp(rgb, C["keratin"], crater)
    rgb = tx.lerp(rgb, C["vessel"], tx.vessel_trees(rng, size, radius, 3, width=1) * 0.8)
    return rgb, alpha * 0.92


def _seborrheic(rng, size, m, radius, dark=True):
    d, alpha = tx.lesion_shape(rng, size, radius, 0.3 + 0.3 * m, 0.1, edge=0.04)
    colours = ["tan", "brown", "dark_brown"] if dark else ["tan", "light_brown"]
    rgb = tx.colour_mix(rng, size, [C[c] for c in colours], cells=4)
    ridges = tx.pigment_network(rng, size, 5 * size / 160, width=0.35)
    rgb = rgb * (1 - 0.25 * ridges)[..., None]
    milia = tx.scatter_dots(rng, size, rng.integers(2, 9), radius, 0.8, (1.0, 2.0))
    rgb = tx.lerp(rgb, C["keratin"], milia)
    comedo = tx.scatter_dots(rng, size, rng.integers(2, 9), radius, 0.8, (1.0, 2.0))
    return tx.lerp(rgb, C["black"], comedo * 0.8), alpha


def _pbk(rng, size, m, radius):
    rgb, alpha = _seborrheic(rng, size, m, radius, dark=False)
    return rgb, alpha * 0.85


def _lentigo(rng, size, m, radius):
    d, alpha = tx.lesion_shape(rng, size, radius, 0.45, 0.35, edge=0.1)
    rgb = tx.colour_mix(rng, size, [C["tan"], C["light_brown"]], cells=4, sharpness=1.5)
    rgb = rgb * (1 - 0.12 * tx.pigment_network(rng, size, 7 * size / 160, width=0.25))[..., None]
    return rgb, alpha * 0.7


def _dermatofibroma(rng, size, m, radius):
    radius = min(radius, 0.2)
    d, alpha = tx.lesion_shape(rng, size, radius, 0.15, 0.05, edge=0.2, elong=0.08)
    rgb = C["light_brown"] * np.ones((size, size, 1), np.float32)
    rgb = rgb * (1 - 0.2 * tx.pigment_network(rng, size, 6 * size / 160) * np.clip(d, 0, 1))[..., None]
    scar = np.clip((0.5 - d) * 4 + 0.3 * tx.value_noise(rng, size, 6), 0, 1)
    return tx.lerp(rgb, C["white"], scar * 0.9), alpha * 0.85


def _hemangioma(rng, size, m, radius):
    d, alpha = tx.lesion_shape(rng, size, radius, 0.25, 0.05, edge=0.05)
    rgb = tx.colour_mix(rng, size, [C["crimson"], C["purple"], C["red"]], cells=6, sharpness=4)
    septa = tx.pigment_network(rng, size, 8 * size / 160, width=0.2)
    return tx.lerp(rgb, C["white"], septa * 0.6), alpha


def _actinic(rng, size, m, radius):
    d, alpha = tx.lesion_shape(rng, size, radius, 0.4, 0.3, edge=0.25)
    rgb = tx.colour_mix(rng, size, [C["pink"], C["scc_red"]], cells=5, sharpness=1.5)
    follicles = tx.scatter_dots(rng, size, rng.integers(10, 25), radius, 0.9, (1.0, 1.8))
    rgb = tx.lerp(rgb, C["white"], follicles * 0.8)
    return rgb, alpha * 0.6


RENDERERS = {
    "nevus": _nevus, "seborrheic": _seborrheic, "pbk": _pbk, "lentigo": _lentigo,
    "dermatofibroma": _dermatofibroma, "hemangioma": _hemangioma, "atypical": _atypical, "actinic": _actinic,
    "bcc": _bcc, "melanoma": _melanoma, "melanoma_invasive": _melanoma_invasive,
    "melanoma_in_situ": _melanoma_in_situ, "metastasis": _metastasis, "scc": _scc,
    "keratoacanthoma": _keratoacanthoma,
}
