"""Seeded synthetic UHR aerial scenes with exact DeepGlobe labels, at any size.

A scene is laid out first (exact labels), then painted: natural cover (rangeland, forest,
barren) from competing smooth random fields; lakes and a meandering river; farm regions
(Voronoi cells, each with its own orientation) cut into rectangular fields with crop rows,
orchards and tracks; towns of rotated street blocks with gable-roofed houses, flat industrial
roofs and sun shadows; roads and dirt tracks across everything. Sizes are in pixels at about
0.5 m/pixel (DeepGlobe's GSD), so a bigger frame shows more landscape, not bigger houses.

Labels follow DeepGlobe's annotation habits: a town's streets and yards are urban; roads and
tracks outside towns take the class of the land around them. Everything is vectorised numpy /
OpenCV (noise is up-sampled random grids): a 2048² scene takes a few seconds on one core.

``uhr-seg synthetic --size 2048 --seed 5 --out scene.png`` writes a scene, its colour label and
an overlay; ``models/sample_frame.jpg`` is made by ``uhr-seg synthetic --sample-frame``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

URBAN, AGRICULTURE, RANGELAND, FOREST, WATER, BARREN = range(6)

#: The bundled demo frame: ``generate_scene(SAMPLE_FRAME_SIZE, seed=SAMPLE_FRAME_SEED)``.
SAMPLE_FRAME_SIZE = 2048
SAMPLE_FRAME_SEED = 1
SAMPLE_FRAME_QUALITY = 90

# Colours (RGB) measured on DeepGlobe tiles: aerial imagery is muted, brownish and hazy.
_RANGELAND_DRY = (128, 114, 86)
_RANGELAND_GREEN = (92, 92, 64)
_FOREST_DARK = (40, 54, 38)
_FOREST_LIGHT = (82, 96, 62)
_BARREN_SAND = (170, 150, 118)
_BARREN_GREY = (138, 128, 110)
_CROPS = np.array(
    [
        (74, 98, 52),
        (92, 108, 60),
        (124, 118, 80),
        (148, 132, 92),
        (118, 98, 72),
        (88, 80, 62),
        (64, 88, 48),
    ],
    np.float32,
)
_ROOFS = np.array(
    [
        (168, 162, 150),
        (196, 192, 182),
        (138, 92, 74),
        (152, 110, 88),
        (88, 88, 88),
        (120, 104, 88),
        (98, 110, 128),
        (140, 134, 124),
    ],
    np.float32,
)
_ROOF_WEIGHTS = np.array([0.2, 0.12, 0.18, 0.12, 0.14, 0.12, 0.04, 0.08])
_ASPHALT = (96, 94, 90)
_DIRT = (150, 132, 104)
_YARD_SOIL = (132, 118, 94)
_YARD_GRASS = (90, 102, 64)
_CONCRETE = (160, 156, 146)
_SHADOW = 0.5
_SUN_OFFSET = np.array([1.0, 0.8])  # shadow direction (x, y) per unit of building height
_COARSE_STEP = 16  # pixels per cell of the land-use decision fields


def generate_scene(
    size: int | tuple[int, int], seed: int | tuple[int, ...] = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic aerial scene: ``(image H×W×3 uint8 RGB, label H×W uint8 DeepGlobe ids)``.

    ``size`` is ``N`` (square) or ``(H, W)``, at least 64; ``seed`` an int or tuple of ints.
    The same arguments give the same scene (numpy's PCG64 streams); pixel-exact repeats are
    guaranteed for the same numpy/OpenCV builds, where SIMD float rounding cannot differ.
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(height, width) < 64:
        raise ValueError(f"synthetic scenes must be at least 64x64 pixels, got {width}x{height}")
    rng = np.random.default_rng(seed)
    scene = _Scene(height, width, rng)
    scene.lay_out()
    return scene.paint(), scene.label


# --------------------------------------------------------------------------------- noise


def _noise(shape: tuple[int, int], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth zero-mean unit-ish noise with features about ``cell`` pixels wide (float32)."""
    height, width = shape
    if cell <= 1.5:
        return rng.standard_normal(shape, dtype=np.float32)
    rows, cols = math.ceil(height / cell) + 3, math.ceil(width / cell) + 3
    grid = rng.standard_normal((rows, cols), dtype=np.float32)
    scale = cell
    up = cv2.resize(grid, (round(cols * scale), round(rows * scale)), interpolation=cv2.INTER_CUBIC)
    top, left = (int(rng.integers(0, max(1, round(scale)))) for _ in range(2))
    return up[top : top + height, left : left + width]


def _fbm(
    shape: tuple[int, int], cells: tuple[float, ...], rng: np.random.Generator, falloff: float = 0.6
) -> np.ndarray:
    """Sum of :func:`_noise` octaves (largest first, amplitude × ``falloff`` each), std ≈ 1."""
    total = np.zeros(shape, np.float32)
    amplitude, power = 1.0, 0.0
    for cell in cells:
        total += amplitude * _noise(shape, cell, rng)
        power += amplitude**2
        amplitude *= falloff
    total *= 1.0 / math.sqrt(power)
    return total


def _hash(*keys: np.ndarray, salt: int) -> np.ndarray:
    """Well-mixed uint32 hash of integer arrays (per-parcel random attributes, no tables)."""
    mixed = np.full(np.broadcast_shapes(*(k.shape for k in keys)), salt & 0xFFFFFFFF, np.uint32)
    for factor, key in zip((0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D), keys, strict=False):
        mixed ^= key.astype(np.uint32, copy=False) * np.uint32(factor)  # wraps negatives
        mixed ^= mixed >> np.uint32(15)
        mixed *= np.uint32(0x2C1B3C6D)
    mixed ^= mixed >> np.uint32(16)
    mixed *= np.uint32(0x297A2D39)
    mixed ^= mixed >> np.uint32(15)
    return mixed


def _unit(hashed: np.ndarray, attribute: int) -> np.ndarray:
    """Attribute number ``attribute`` of a hashed parcel as float32 in [0, 1)."""
    mixed = hashed ^ np.uint32((attribute * 0x9E3779B9) & 0xFFFFFFFF)
    mixed *= np.uint32(0x85EBCA6B)
    mixed ^= mixed >> np.uint32(13)
    mixed *= np.uint32(0xC2B2AE35)
    return (mixed >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 2**24)


def _lerp(a, b, t: np.ndarray) -> np.ndarray:
    """Per-pixel blend of two RGB colours (or H×W×3 arrays) with weight ``t`` (H×W) → H×W×3."""
    a = np.asarray(a, np.float32)
    out = t[..., None] * (np.asarray(b, np.float32) - a)
    out += a
    return out


# --------------------------------------------------------------------------------- layout


@dataclass
class _Regions:
    """Voronoi regions: per-pixel ``index`` into per-region tables."""

    index: np.ndarray  # int32 H×W region id
    cos: np.ndarray  # float32 per region: grid orientation
    sin: np.ndarray
    habit: np.ndarray  # float32 per region in [0, 1): hedges vs tracks, paved vs dirt


@dataclass
class _Cells:
    """A rotated grid of rectangular parcels: per-pixel parcel id hash and local coordinates."""

    key: np.ndarray  # uint32 parcel hash
    along: np.ndarray  # float32 position along the parcel's first axis, 0..size_u
    across: np.ndarray  # float32 position along the second axis, 0..size_v
    size_u: np.ndarray  # float32 parcel size per pixel
    size_v: np.ndarray

    def crop(self, window: tuple[slice, slice]) -> _Cells:
        return _Cells(*(getattr(self, f.name)[window] for f in fields(self)))


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """Row/column slices around the True pixels of ``mask`` plus ``margin`` (None if empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, height)),
        slice(max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, width)),
    )


class _Scene:
    """One scene: :meth:`lay_out` decides every pixel's class, :meth:`paint` renders it.

    Land use is decided on coarse random fields (one value per 16 px) so that a whole field or
    street block is farmland or town, never half of it; natural cover gets pixel-level ragged
    edges. All randomness comes from ``rng`` in a fixed order, hence determinism.
    """

    def __init__(self, height: int, width: int, rng: np.random.Generator) -> None:
        self.height, self.width, self.rng = height, width, rng
        self.shape = (height, width)
        self.salt = int(rng.integers(2**31))
        self.label = np.full(self.shape, RANGELAND, np.uint8)
        self.coarse_shape = (height // _COARSE_STEP + 2, width // _COARSE_STEP + 2)

    def _coarse_field(self, cells: tuple[float, ...]) -> np.ndarray:
        """Smooth field on the coarse grid with features ``cells`` image pixels wide."""
        return _fbm(self.coarse_shape, tuple(c / _COARSE_STEP for c in cells), self.rng)

    def _at(self, coarse: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """A coarse field sampled at image coordinates (nearest cell)."""
        rows = np.clip((y / _COARSE_STEP).astype(np.int32), 0, coarse.shape[0] - 1)
        cols = np.clip((x / _COARSE_STEP).astype(np.int32), 0, coarse.shape[1] - 1)
        return coarse[rows, cols]

    def _full(self, coarse: np.ndarray) -> np.ndarray:
        """A coarse field bilinearly up-sampled to the frame."""
        up = cv2.resize(
            coarse,
            (coarse.shape[1] * _COARSE_STEP, coarse.shape[0] * _COARSE_STEP),
            interpolation=cv2.INTER_LINEAR,
        )
        return up[: self.height, : self.width]

    def lay_out(self) -> None:
        rng = self.rng
        big = max(self.height, self.width)
        macro = (1600.0, 800.0, 400.0)
        # Land-use shares vary a lot between scenes (rural, peri-urban, town, riverside).
        urban_share = float(
            rng.choice([0.0, rng.uniform(0.05, 0.2), rng.uniform(0.2, 0.5)], p=[0.15, 0.45, 0.4])
        )
        farm_share = float(rng.uniform(0.15, 0.55))
        lake_share = float(rng.choice([0.0, rng.uniform(0.03, 0.15)], p=[0.5, 0.5]))

        self.lake_field = self._coarse_field(macro)
        self.town_field = self._coarse_field(macro)
        self.farm_field = self._coarse_field(macro)
        self.lake_level = np.quantile(self.lake_field, lake_share) if lake_share else -np.inf
        self.town_level = np.quantile(self.town_field, 1 - urban_share) if urban_share else np.inf
        self.farm_level = np.quantile(self.farm_field, 1 - farm_share)

        self._natural_cover(macro)
        self.regions = self._regions(max(600.0, big / 4))
        # Whole fields / blocks become farmland / town, decided at their centres.
        self.field_cells, centre_x, centre_y = self._cells(
            self.regions, (220, 520), (70, 260), salt=1
        )
        self.farmland = (self._at(self.farm_field, centre_x, centre_y) > self.farm_level) & (
            self._at(self.lake_field, centre_x, centre_y) > self.lake_level
        )
        self.block_cells, centre_x, centre_y = self._cells(
            self.regions, (110, 230), (70, 140), salt=2
        )
        self.town = (self._at(self.town_field, centre_x, centre_y) > self.town_level) & (
            self._at(self.lake_field, centre_x, centre_y) > self.lake_level
        )
        del centre_x, centre_y
        self.water = self._water()
        self.roads, self.tracks = self._roads()

        self.label[self.farmland] = AGRICULTURE
        self.label[self.town] = URBAN
        self.label[self.water] = WATER

    def _natural_cover(self, macro: tuple[float, ...]) -> None:
        """Rangeland / forest / barren: argmax of three smooth fields with ragged edges."""
        rng = self.rng
        biases = {RANGELAND: 0.35, FOREST: rng.uniform(-0.4, 0.3), BARREN: rng.uniform(-0.7, 0.0)}
        best = np.full(self.shape, -np.inf, np.float32)
        for cls, bias in biases.items():
            score = self._full(self._coarse_field(macro)) + bias
            score += 0.25 * _fbm(self.shape, (48.0, 16.0, 6.0), rng)
            better = score > best
            self.label[better] = cls
            np.maximum(best, score, out=best)

    def _regions(self, spacing: float) -> _Regions:
        """Voronoi farm/town regions, each with its own grid orientation and habits."""
        rng = self.rng
        count = max(2, round(self.height * self.width / spacing**2))
        seeds = np.full(self.shape, 255, np.uint8)
        ys = rng.integers(0, self.height, count)
        xs = rng.integers(0, self.width, count)
        seeds[ys, xs] = 0
        _, region = cv2.distanceTransformWithLabels(
            seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        # Regions lean towards one dominant orientation, like a cadastral grid.
        base = rng.uniform(0, np.pi / 2)
        angles = base + rng.normal(0, 0.25, count + 1) * (rng.random(count + 1) < 0.6)
        angles = np.where(rng.random(count + 1) < 0.2, rng.uniform(0, np.pi, count + 1), angles)
        return _Regions(
            region,
            np.cos(angles).astype(np.float32),
            np.sin(angles).astype(np.float32),
            rng.random(count + 1).astype(np.float32),
        )

    def _cells(
        self, regions: _Regions, size_u: tuple[float, float], size_v: tuple[float, float], salt: int
    ) -> tuple[_Cells, np.ndarray, np.ndarray]:
        """Rotated rectangular parcels whose sizes vary per region, and each pixel's parcel
        centre (x, y) in image pixels, for parcel-level decisions."""
        region = regions.index
        cos, sin = regions.cos[region], regions.sin[region]
        count = len(regions.cos)
        cell_u = self.rng.uniform(*size_u, count).astype(np.float32)[region]
        cell_v = self.rng.uniform(*size_v, count).astype(np.float32)[region]
        x = np.arange(self.width, dtype=np.float32)[None, :]
        y = np.arange(self.height, dtype=np.float32)[:, None]
        u = x * cos + y * sin + 1e4
        v = -x * sin + y * cos + 1e4
        index_u = np.floor(u / cell_u)
        index_v = np.floor(v / cell_v)
        key = _hash(
            region, index_u.astype(np.int32), index_v.astype(np.int32), salt=self.salt + salt
        )
        centre_u = (index_u + 0.5) * cell_u - 1e4
        centre_v = (index_v + 0.5) * cell_v - 1e4
        cells = _Cells(key, u - index_u * cell_u, v - index_v * cell_v, cell_u, cell_v)
        return cells, centre_u * cos - centre_v * sin, centre_u * sin + centre_v * cos

    def _water(self) -> np.ndarray:
        rng = self.rng
        lake = self._full(self.lake_field) + 0.08 * _fbm(self.shape, (40.0, 12.0), rng)
        # Open + close: no one-pixel ponds or islands, shorelines stay irregular at ~10 px.
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
        water = cv2.morphologyEx((lake < self.lake_level).astype(np.uint8), cv2.MORPH_OPEN, kernel)
        water = cv2.morphologyEx(water, cv2.MORPH_CLOSE, kernel).astype(bool)
        if rng.random() < 0.45:
            river = np.zeros(self.shape, np.uint8)
            width = int(rng.uniform(18, 70))
            cv2.polylines(
                river,
                [_meander(self.height, self.width, rng, wiggle=0.35)],
                False,
                1,
                thickness=width,
                lineType=cv2.LINE_8,
            )
            water = water | river.astype(bool)
        return water

    def _roads(self) -> tuple[np.ndarray, np.ndarray]:
        """Paved roads (town-independent, 8-16 px) and dirt tracks (3-5 px) as uint8 masks."""
        rng = self.rng
        area = self.height * self.width / 2048**2
        roads = np.zeros(self.shape, np.uint8)
        for _ in range(rng.poisson(1.5 * area) + 1):
            cv2.polylines(
                roads,
                [_meander(self.height, self.width, rng, wiggle=0.08)],
                False,
                255,
                thickness=int(rng.uniform(8, 16)),
                lineType=cv2.LINE_AA,
            )
        tracks = np.zeros(self.shape, np.uint8)
        for _ in range(rng.poisson(3 * area)):
            cv2.polylines(
                tracks,
                [_meander(self.height, self.width, rng, wiggle=0.3)],
                False,
                255,
                thickness=int(rng.uniform(3, 6)),
                lineType=cv2.LINE_AA,
            )
        return roads, tracks

    # ---------------------------------------------------------------------------- painting

    def paint(self) -> np.ndarray:
        rng = self.rng
        image = np.empty((*self.shape, 3), np.float32)
        # Each painter works inside the bounding box of its pixels (towns and lakes are often
        # small) and fills only its own pixels. Roads go over the land, under towns' roofs.
        painters: tuple[tuple[Callable[..., None], np.ndarray | None], ...] = (
            (self._paint_rangeland, self.label == RANGELAND),
            (self._paint_barren, self.label == BARREN),
            (self._paint_forest, self.label == FOREST),
            (self._paint_farmland, self.label == AGRICULTURE),
            (self._paint_roads_outside_town, None),
            (self._paint_town, self.label == URBAN),
            (self._paint_water, self.water),
        )
        for painter, mask in painters:
            if mask is None:
                painter(image)
                continue
            window = _bounding_box(mask, margin=8)
            if window is not None:
                painter(image[window], mask[window], window)
        # Atmosphere and sensor: haze, slight tint, optics blur, noise.
        haze = rng.uniform(0.04, 0.14)
        tint = np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.025, 3)
        image = image * (tint * (1 - haze)).astype(np.float32) + np.float32(170 * haze)
        image *= (1 + 0.05 * self._full(self._coarse_field((1200.0,))))[..., None]
        image = cv2.GaussianBlur(image, (0, 0), 0.7)
        image += 2.0 * rng.standard_normal(image.shape, dtype=np.float32)
        return np.clip(image + 0.5, 0, 255).astype(np.uint8)

    # Painters: ``image`` and ``mask`` are the ``window`` (row, column slices) of the frame.

    def _paint_rangeland(self, image: np.ndarray, mask: np.ndarray, window) -> None:
        rng, shape = self.rng, mask.shape
        greenness = np.clip(0.5 + 0.45 * _fbm(shape, (300.0, 90.0, 30.0), rng), 0, 1)
        colour = _lerp(_RANGELAND_DRY, _RANGELAND_GREEN, greenness)
        colour *= (1 + 0.07 * _fbm(shape, (12.0, 4.0, 1.0), rng))[..., None]
        shrubs = _fbm(shape, (5.0, 2.5), rng, falloff=0.8)
        _add_blobs(colour, shrubs > 1.7, (58, 66, 44), shadow=2)
        image[mask] = colour[mask]

    def _paint_barren(self, image: np.ndarray, mask: np.ndarray, window) -> None:
        rng, shape = self.rng, mask.shape
        tone = np.clip(0.5 + 0.5 * _fbm(shape, (400.0, 120.0, 40.0), rng), 0, 1)
        colour = _lerp(_BARREN_SAND, _BARREN_GREY, tone)
        ridges = 1 - np.abs(_fbm(shape, (60.0, 20.0), rng))
        colour *= (0.93 + 0.1 * ridges + 0.05 * _fbm(shape, (3.0, 1.0), rng))[..., None]
        image[mask] = colour[mask]

    def _paint_forest(self, image: np.ndarray, mask: np.ndarray, window) -> None:
        rng, shape = self.rng, mask.shape
        crowns = _fbm(shape, (7.0, 3.5, 1.8), rng, falloff=0.55)
        lit = cv2.filter2D(crowns, -1, np.array([[1, 0, 0], [0, 0, 0], [0, 0, -1]], np.float32))
        brightness = np.clip(0.55 + 0.22 * crowns + 0.18 * lit, 0.2, 1.1)
        hue = np.clip(0.5 + 0.4 * _fbm(shape, (200.0, 60.0), rng), 0, 1)
        colour = _lerp(_FOREST_DARK, _FOREST_LIGHT, hue) * (brightness * 1.35)[..., None]
        image[mask] = colour[mask]

    def _paint_farmland(self, image: np.ndarray, mask: np.ndarray, window) -> None:
        rng, shape, cells = self.rng, mask.shape, self.field_cells.crop(window)
        crop = _CROPS[(_unit(cells.key, 3) * len(_CROPS)).astype(np.int32)]
        crop *= (0.9 + 0.2 * _unit(cells.key, 4))[..., None]
        # Rows run along one axis of the field; period and contrast vary per field.
        period = 3.0 + 7.0 * _unit(cells.key, 5)
        along_rows = np.where(_unit(cells.key, 6) < 0.5, cells.along, cells.across)
        rows = np.sin(along_rows * (2 * np.pi) / period)
        contrast = 0.02 + 0.1 * _unit(cells.key, 7)
        moisture = 0.06 * _fbm(shape, (120.0, 40.0), rng)
        colour = crop * (1 + contrast * rows + moisture)[..., None]
        orchard = _unit(cells.key, 8) < 0.08
        trees = (np.sin(cells.along * 0.55) * np.sin(cells.across * 0.55) > 0.55) & orchard
        _add_blobs(colour, trees, _FOREST_LIGHT, shadow=2)
        # Field margins: a light track or a dark hedge, 2-3 px, on every field edge.
        edge = np.minimum(
            np.minimum(cells.along, cells.size_u - cells.along),
            np.minimum(cells.across, cells.size_v - cells.across),
        )
        margin = edge < 1.2 + 1.5 * _unit(cells.key, 9)
        hedge = (self.regions.habit < 0.3)[self.regions.index[window]]
        colour[margin & hedge] = _FOREST_DARK
        colour[margin & ~hedge] = _DIRT
        image[mask] = colour[mask]

    def _paint_town(self, image: np.ndarray, mask: np.ndarray, window) -> None:
        rng, shape, cells = self.rng, mask.shape, self.block_cells.crop(window)
        key = cells.key
        # Yards: soil, grass, paving and trees mixed at garden scale.
        yard_mix = _fbm(shape, (40.0, 14.0, 5.0), rng)
        colour = _lerp(_YARD_SOIL, _YARD_GRASS, np.clip(0.5 + 0.5 * yard_mix, 0, 1))
        colour[yard_mix > 0.9] = _CONCRETE
        colour *= (1 + 0.06 * _fbm(shape, (3.0, 1.0), rng))[..., None]
        _add_blobs(colour, _fbm(shape, (6.0, 3.0), rng) > 1.5, _FOREST_DARK, shadow=3)

        street = 5.0 + 3.0 * _unit(key, 11)
        u = cells.along - street
        v = cells.across - street
        inner_u, inner_v = cells.size_u - 2 * street, cells.size_v - 2 * street
        # Houses: two rows of lots per block, one house per lot (some lots empty).
        lot_width = 16.0 + 20.0 * _unit(key, 12)
        half_v = inner_v / 2
        lot = np.floor(u / lot_width)
        back_row = v >= half_v
        lot_key = _hash(key, lot.astype(np.int32), back_row, salt=self.salt + 3)
        local_u = u - lot * lot_width - lot_width / 2
        depth_v = np.where(back_row, inner_v - v, v)  # distance from the lot's street side
        house_w = lot_width * (0.5 + 0.35 * _unit(lot_key, 13))
        house_d = half_v * (0.35 + 0.4 * _unit(lot_key, 14))
        setback = 2.0 + (half_v - house_d - 2.0) * 0.4 * _unit(lot_key, 15)
        across_house = depth_v - setback - house_d / 2
        in_lot = (u >= 0) & (u < inner_u - lot_width * 0.3) & (v >= 0) & (v < inner_v)
        house = (
            in_lot
            & (np.abs(local_u) < house_w / 2)
            & (np.abs(across_house) < house_d / 2)
            & (_unit(lot_key, 16) < 0.85)
        )
        # Gable roofs: the two slopes catch the sun differently; ridge along the longer side.
        sunny_slope = np.where(house_w > house_d, across_house > 0, local_u > 0)
        height = 3.0 + 5.0 * _unit(lot_key, 19)
        # Industrial blocks: one flat, taller roof over most of the block.
        industrial = _unit(key, 20) < 0.12
        flat = industrial & (u > 4) & (u < inner_u - 4) & (v > 4) & (v < inner_v - 4)
        roads = self.roads[window]
        building = np.where(industrial, flat, house) & mask & (roads == 0)
        height = np.where(industrial, 10.0, height)

        is_street = ~((u >= 0) & (u < inner_u) & (v >= 0) & (v < inner_v)) & mask
        paved = (self.regions.habit < 0.7)[self.regions.index[window][is_street]]
        colour[is_street] = np.where(paved[:, None], _ASPHALT, _DIRT)
        self._paint_roads(colour, roads)
        _cast_shadows(colour, building, height)
        # Roof colours only where there are roofs (a 1-D gather, not H×W×3 arrays).
        lots = lot_key[building]
        roof_index = np.searchsorted(np.cumsum(_ROOF_WEIGHTS), _unit(lots, 17) * 0.9999)
        roof = _ROOFS[roof_index] * (0.92 + 0.16 * _unit(lots, 18))[:, None]
        roof *= np.where(sunny_slope[building], 1.06, 0.86)[:, None]
        flat_roof = industrial[building]
        roof[flat_roof] = (
            np.asarray(_CONCRETE, np.float32)
            * (0.85 + 0.2 * _unit(key[building][flat_roof], 21))[:, None]
        )
        colour[building] = roof
        image[mask] = colour[mask]

    def _paint_roads_outside_town(self, image: np.ndarray) -> None:
        """Dirt tracks and paved roads over the countryside (tracks stop at town edges)."""
        countryside = self.label != URBAN
        self._paint_roads(image, self.tracks * countryside, _DIRT)
        self._paint_roads(image, self.roads * countryside)

    @staticmethod
    def _paint_roads(image: np.ndarray, coverage: np.ndarray, tone=_ASPHALT) -> None:
        """Blend ``tone`` over ``image`` by the anti-aliased uint8 ``coverage`` (0..255)."""
        on_road = coverage > 0
        weight = coverage[on_road].astype(np.float32)[:, None] * np.float32(1 / 255)
        image[on_road] += (np.asarray(tone, np.float32) - image[on_road]) * weight

    def _paint_water(self, image: np.ndarray, mask: np.ndarray, window) -> None:
        rng, shape = self.rng, mask.shape
        depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
        depth = np.clip(depth / rng.uniform(15, 60), 0, 1)
        muddy = rng.random() < 0.3  # silt-laden water, as in DeepGlobe's river tiles
        shallow = (136, 120, 94) if muddy else (92, 108, 88)
        deep = (104, 98, 80) if muddy else (44, 64, 60)
        colour = _lerp(shallow, deep, depth)
        colour *= (1 + 0.025 * _fbm(shape, (160.0, 40.0), rng))[..., None]
        # A pale wet band on the shore (labelled as the land it belongs to).
        shore = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
        beach = (shore > 0) & (shore < rng.uniform(2, 6))
        image[beach] = image[beach] * 0.5 + np.float32(0.5) * np.asarray(_BARREN_SAND, np.float32)
        image[mask] = colour[mask]


def _add_blobs(colour: np.ndarray, blobs: np.ndarray, tone, shadow: int) -> None:
    """Paint tree/shrub crowns ``blobs`` with ``tone`` and a sun shadow ``shadow`` px long."""
    if shadow:
        shadow_mask = np.zeros_like(blobs)
        shadow_mask[shadow:, shadow:] = blobs[:-shadow, :-shadow]
        colour[shadow_mask & ~blobs] *= _SHADOW + 0.2
    colour[blobs] = np.asarray(tone, np.float32) * 0.9 + colour[blobs] * 0.1


def _cast_shadows(colour: np.ndarray, building: np.ndarray, height: np.ndarray) -> None:
    """Darken ground down-sun of buildings: shadow length follows each building's height."""
    shadow = np.zeros_like(building)
    for step in range(1, int(height.max()) + 1):
        dx, dy = (round(float(c) * step) for c in _SUN_OFFSET)
        caster = building & (height >= step)
        shadow[dy:, dx:] |= caster[: caster.shape[0] - dy, : caster.shape[1] - dx]
    colour[shadow & ~building] *= _SHADOW


def _meander(height: int, width: int, rng: np.random.Generator, wiggle: float) -> np.ndarray:
    """An int32 polyline crossing the frame edge to edge with smoothly drifting heading."""
    size = max(height, width)
    step = max(8.0, size / 200)
    start_edge = rng.integers(4)
    if start_edge < 2:  # left or right edge, heading across
        point = np.array([0.0 if start_edge == 0 else width - 1.0, rng.uniform(0, height)])
        heading = 0.0 if start_edge == 0 else np.pi
    else:
        point = np.array([rng.uniform(0, width), 0.0 if start_edge == 2 else height - 1.0])
        heading = np.pi / 2 if start_edge == 2 else -np.pi / 2
    heading += rng.uniform(-0.6, 0.6)
    target = heading
    turn = 0.0
    points = [point.copy()]
    margin = size * 0.1
    for _ in range(int(4 * size / step)):
        turn = 0.85 * turn + rng.normal(0, wiggle * 0.15)
        heading += turn
        heading += 0.05 * math.remainder(target - heading, 2 * math.pi)
        point = point + step * np.array([math.cos(heading), math.sin(heading)])
        points.append(point.copy())
        if not (-margin < point[0] < width + margin and -margin < point[1] < height + margin):
            break
    return np.round(np.array(points)).astype(np.int32).reshape(-1, 1, 2)


# ------------------------------------------------------------------------ the sample frame


def write_sample_frame(path: Path) -> None:
    """Write the bundled demo frame (see the module docstring); its label is regenerable."""
    image, _ = generate_scene(SAMPLE_FRAME_SIZE, seed=SAMPLE_FRAME_SEED)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, SAMPLE_FRAME_QUALITY]):
        raise OSError(f"could not write {path}")
