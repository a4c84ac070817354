"""Segmentation data sets: DeepGlobe Land Cover, Inria Aerial, image/mask folders, synthetic scenes.

Every data set yields :class:`Sample` (``uint8`` RGB image, ``uint8`` class-id label with
255 = ignore, a name that points at the file). A sample that cannot be used raises
:class:`BadSampleError` naming the file; :meth:`SegmentationDataset.validate` finds them all
up front so that a training run never dies mid-epoch.

Split selection, in order: an explicit ``ids`` list; ``<root>/<split>.txt`` (one id per line);
the data set's published split (Inria: FCtL); otherwise a deterministic hash split of the files
present (about 70/15/15, at least one tile each for val and test when there are 3 or more).
``split="all"`` always means every tile.
"""

from __future__ import annotations

import hashlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import yaml

from uhr_seg_ros.data import palettes
from uhr_seg_ros.data.image_io import read_rgb
from uhr_seg_ros.data.splits import deepglobe_community_split, inria_fctl_split

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "all")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
#: Largest share of a mask's pixels allowed to have a colour/value outside the palette.
DEFAULT_MAX_UNKNOWN_FRACTION = 0.01


class Sample(NamedTuple):
    """One labelled frame: ``image`` H×W×3 uint8 RGB, ``label`` H×W uint8 (255 = ignore)."""

    image: np.ndarray
    label: np.ndarray
    name: str


class BadSampleError(ValueError):
    """A sample that cannot be used (missing/unreadable file, size mismatch, unknown colours)."""


class SegmentationDataset(ABC):
    """Indexable collection of :class:`Sample`; ``classes`` and ``palette`` describe the labels."""

    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    #: Ground sample distance in metres per pixel, when known: training resamples every source
    #: to the model's GSD (``data.gsd_m``) so that a house is as many pixels wide in each.
    gsd_m: float | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    @abstractmethod
    def names(self) -> list[str]:
        """One name per sample, in index order (file stem or generated name)."""

    def __len__(self) -> int:
        return len(self.names)

    @abstractmethod
    def __getitem__(self, index: int) -> Sample:
        """Decode sample ``index``; raises :class:`BadSampleError` naming the file if unusable."""

    def validate(self) -> list[str]:
        """Decode every sample once; one readable problem line per bad sample (empty = ok)."""
        problems = []
        for index in range(len(self)):
            try:
                self[index]
            except BadSampleError as exc:
                problems.append(str(exc))
        return problems


@dataclass(frozen=True)
class _Pair:
    name: str
    image: Path
    mask: Path | None


def _read_image(path: Path) -> np.ndarray:
    """H×W×3 uint8 RGB (see :func:`read_rgb`); any problem is a bad sample naming the file."""
    try:
        return read_rgb(path)
    except (OSError, ValueError) as exc:
        raise BadSampleError(f"{path}: unreadable image: {exc}") from exc


def _read_mask(path: Path) -> np.ndarray:
    """H×W (id/grey masks) or H×W×3 RGB (colour masks) uint8 array, as stored."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise BadSampleError(f"{path}: unreadable mask (corrupt, empty or unsupported format)")
    if raw.dtype != np.uint8:
        raise BadSampleError(
            f"{path}: mask must be 8-bit, got {raw.dtype}; re-save it as an 8-bit PNG"
        )
    if raw.ndim == 3:
        return cv2.cvtColor(raw[..., :3], cv2.COLOR_BGR2RGB)
    return raw


def _stable_fraction(name: str) -> float:
    """Deterministic pseudo-random number in [0, 1) from a name (split assignment)."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 2**32


def hash_split(names: Sequence[str]) -> dict[str, str]:
    """Name → "train"/"val"/"test" when no split is published: ~70/15/15, stable across runs.

    Names are ordered by a hash (not alphabetically, which would correlate with acquisition);
    with 3 or more names val and test get at least one each.
    """
    ordered = sorted(names, key=_stable_fraction)
    count = len(ordered)
    n_held = max(1, round(0.15 * count)) if count >= 3 else 0
    assignment = {name: "train" for name in ordered}
    for name in ordered[:n_held]:
        assignment[name] = "val"
    for name in ordered[n_held : 2 * n_held]:
        assignment[name] = "test"
    return assignment


class _FileDataset(SegmentationDataset):
    """Image/mask file pairs with split selection; subclasses decode their mask format."""

    def __init__(
        self,
        root: str | Path,
        split: str = "all",
        ids: Sequence[str] | None = None,
        max_unknown_fraction: float = DEFAULT_MAX_UNKNOWN_FRACTION,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data set folder {self.root} does not exist")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.max_unknown_fraction = max_unknown_fraction
        pairs = self._find_pairs()
        if not pairs:
            raise FileNotFoundError(f"no images found in {self.root}: {self._layout_hint()}")
        self._pairs = self._select(pairs, split, ids)

    @abstractmethod
    def _find_pairs(self) -> list[_Pair]:
        """Every image under ``root`` with its expected mask path (which may not exist)."""

    @abstractmethod
    def _layout_hint(self) -> str:
        """One line describing the expected folder layout, for error messages."""

    @abstractmethod
    def _decode_mask(self, raw: np.ndarray, path: Path) -> tuple[np.ndarray, float]:
        """Stored mask → ``(labels H×W uint8, unknown_fraction)``."""

    def _published_split(self, name: str) -> str | None:
        """The benchmark's split for ``name``, or None when the data set has none built in."""
        return None

    def _select(self, pairs: list[_Pair], split: str, ids: Sequence[str] | None) -> list[_Pair]:
        by_name = {pair.name: pair for pair in pairs}
        if ids is not None:
            missing = [i for i in ids if i not in by_name]
            if missing:
                raise FileNotFoundError(f"ids not found in {self.root}: {', '.join(missing[:10])}")
            return [by_name[i] for i in ids]
        if split == "all":
            return pairs
        split_file = self.root / f"{split}.txt"
        if split_file.is_file():
            wanted = [_id_from_line(line) for line in split_file.read_text().split()]
            selected = [by_name[i] for i in wanted if i in by_name]
            if len(selected) < len(wanted):
                log.warning(
                    "%s lists %d ids, %d of them have no image in %s",
                    split_file,
                    len(wanted),
                    len(wanted) - len(selected),
                    self.root,
                )
            return selected
        published = {p.name: self._published_split(p.name) for p in pairs}
        if all(v is not None for v in published.values()):
            return [p for p in pairs if published[p.name] == split]
        assignment = hash_split(list(by_name))
        log.info(
            "%s: no %s.txt, using a stable hash split (%s)", self.root, split, "see docs/data.md"
        )
        return [p for p in pairs if assignment[p.name] == split]

    @property
    def names(self) -> list[str]:
        return [pair.name for pair in self._pairs]

    def __getitem__(self, index: int) -> Sample:
        pair = self._pairs[index]
        if pair.mask is None or not pair.mask.is_file():
            expected = pair.mask or f"a mask for {pair.image.name}"
            raise BadSampleError(f"{pair.image}: mask missing (expected {expected})")
        image = _read_image(pair.image)
        label, unknown = self._decode_mask(_read_mask(pair.mask), pair.mask)
        if label.shape != image.shape[:2]:
            raise BadSampleError(
                f"{pair.mask}: size {label.shape[1]}x{label.shape[0]} does not match image "
                f"{pair.image.name} {image.shape[1]}x{image.shape[0]}"
            )
        if unknown > self.max_unknown_fraction:
            raise BadSampleError(
                f"{pair.mask}: {unknown:.1%} of pixels have colours/values outside the palette "
                f"(tolerance {self.max_unknown_fraction:.1%}); is it a lossy (JPEG) or "
                f"wrong-palette mask?"
            )
        return Sample(image, label, pair.name)


def _id_from_line(line: str) -> str:
    """Split-file entries may be ids or file names (``123_sat.jpg``, ``austin1.tif``)."""
    stem = Path(line.strip()).stem
    return re.sub(r"_(sat|mask)$", "", stem)


class DeepGlobeDataset(_FileDataset):
    """DeepGlobe Land Cover: ``<id>_sat.jpg`` + ``<id>_mask.png`` (RGB colour code), 0.5 m.

    Six classes in benchmark order; "unknown" (black) becomes 255. Split: ``train.txt`` /
    ``val.txt`` / ``test.txt`` in ``root`` when present, else the community 454/207/142 split
    (:func:`deepglobe_community_split`; tiles in no list are train).
    """

    classes = palettes.DEEPGLOBE_CLASSES
    palette = palettes.DEEPGLOBE_PALETTE
    gsd_m = 0.5

    def _published_split(self, name: str) -> str | None:
        return deepglobe_community_split(name)

    def _find_pairs(self) -> list[_Pair]:
        return [
            _Pair(
                path.name[: -len("_sat.jpg")],
                path,
                path.with_name(path.name.replace("_sat.jpg", "_mask.png")),
            )
            for path in sorted(self.root.glob("*_sat.jpg"))
        ]

    def _layout_hint(self) -> str:
        return "expected <id>_sat.jpg + <id>_mask.png pairs (DeepGlobe Land Cover)"

    def _decode_mask(self, raw: np.ndarray, path: Path) -> tuple[np.ndarray, float]:
        if raw.ndim != 3:
            raise BadSampleError(
                f"{path}: DeepGlobe masks are RGB colour pictures, got one channel"
            )
        return palettes.rgb_to_class(raw, self.palette, palettes.DEEPGLOBE_UNKNOWN_COLOR)


#: Quadrants in ``deepglobe_512/`` whose parent 2448² tile is known (they follow its split).
DEEPGLOBE_512_PARENTS = {"0079": "104113", "0140": "172307", "0021": "482365", "0235": "6399"}
#: Share of the other 512² pairs held out (stable name hash) as a validation split.
DEEPGLOBE_512_VAL_FRACTION = 0.15


class DeepGlobe512Dataset(DeepGlobeDataset):
    """DeepGlobe quadrants: 1224² windows of land-train tiles downscaled to 512² (~1.2 m GSD).

    Same files and colours as :class:`DeepGlobeDataset`; a pure-red pixel (not a DeepGlobe
    colour, present in one mask) is "unknown". Split: a quadrant of a known parent tile
    (:data:`DEEPGLOBE_512_PARENTS`) takes the parent's community split, so a held-out tile never
    leaks in through its quadrant; the rest (parents unknown) are ~15 % val by a stable name hash
    and train otherwise; there is no test split (held-out testing uses native tiles).
    """

    gsd_m = 0.5 * 1224 / 512

    def _published_split(self, name: str) -> str | None:
        parent = DEEPGLOBE_512_PARENTS.get(name)
        if parent is not None:
            return deepglobe_community_split(parent)
        return "val" if _stable_fraction(name) < DEEPGLOBE_512_VAL_FRACTION else "train"

    def _layout_hint(self) -> str:
        return "expected NNNN_sat.jpg + NNNN_mask.png 512² pairs (DeepGlobe quadrants)"

    def _decode_mask(self, raw: np.ndarray, path: Path) -> tuple[np.ndarray, float]:
        if raw.ndim == 3:
            raw = raw.copy()
            raw[np.all(raw == (255, 0, 0), axis=-1)] = palettes.DEEPGLOBE_UNKNOWN_COLOR
        return super()._decode_mask(raw, path)


_INRIA_FLAT_IMAGE = re.compile(r"^(?P<tile>.+?)_rgb_(?P<size>\d+)$")
_INRIA_FLAT_MASK = re.compile(r"^(?P<tile>.+?)_gt_(?P<size>\d+)(?P<suffix>_.*)?$")


def _mask_size(path: Path) -> str | None:
    """The size tag of an Inria flat-layout mask name (None when the name does not match)."""
    match = _INRIA_FLAT_MASK.match(path.stem)
    return match["size"] if match else None


class InriaDataset(_FileDataset):
    """Inria Aerial Image Labeling: building (1) vs background (0).

    Layouts: the official ``images/<tile>.tif`` + ``gt/<tile>.tif`` (also under ``train/``), or
    flat ``<tile>_rgb_<size>.png`` + ``<tile>_gt_<size>[_suffix].png`` (the mask whose size
    token matches the image's). Without split files the FCtL 126/27/27 split by tile id applies.
    Masks hold {0, 255} (or {0, 1}).
    """

    classes = palettes.INRIA_CLASSES
    palette = palettes.INRIA_PALETTE

    def _find_pairs(self) -> list[_Pair]:
        for base in (self.root, self.root / "train"):
            if (base / "images").is_dir():
                return [
                    _Pair(path.stem, path, _first_existing(base / "gt", path.stem))
                    for path in _images_in(base / "images")
                ]
        masks: dict[str, list[Path]] = {}
        for path in _images_in(self.root):
            match = _INRIA_FLAT_MASK.match(path.stem)
            if match:
                masks.setdefault(match["tile"], []).append(path)
        pairs = []
        for path in _images_in(self.root):
            match = _INRIA_FLAT_IMAGE.match(path.stem)
            if not match:
                continue
            size = match["size"]
            same_size_first = sorted(
                masks.get(match["tile"], []), key=lambda m: _mask_size(m) != size
            )
            pairs.append(
                _Pair(match["tile"], path, same_size_first[0] if same_size_first else None)
            )
        return pairs

    def _layout_hint(self) -> str:
        return (
            "expected images/ + gt/ tile folders, or <tile>_rgb_<size>.png + "
            "<tile>_gt_<size>.png files (Inria Aerial)"
        )

    def _published_split(self, name: str) -> str | None:
        return inria_fctl_split(name)

    def _decode_mask(self, raw: np.ndarray, path: Path) -> tuple[np.ndarray, float]:
        grey = raw if raw.ndim == 2 else raw[..., 0]
        building_value = 1 if grey.max(initial=0) <= 1 else 255
        labels = (grey == building_value).astype(np.uint8)
        unknown = float(((grey != 0) & (grey != building_value)).mean())
        return labels, unknown


class FolderDataset(_FileDataset):
    """Generic ``images/<stem>.*`` + ``masks/<stem>.png`` folder with a ``palette.yaml``.

    ``palette.yaml``::

        classes: [background, building]      # class names, index = class id
        colors: [[0, 0, 0], [255, 0, 0]]     # RGB per class, for colour masks
        ignore_colors: [[255, 255, 255]]     # optional: colours that mean "ignore"
        gsd_m: 0.3                           # optional: metres per pixel (training resamples)

    Masks are either colour pictures (decoded by exact colour) or one-channel class ids
    (values ``< len(classes)``, or 255 = ignore).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "all",
        ids: Sequence[str] | None = None,
        max_unknown_fraction: float = DEFAULT_MAX_UNKNOWN_FRACTION,
        palette_file: str | Path | None = None,
    ) -> None:
        palette_path = Path(palette_file) if palette_file else Path(root) / "palette.yaml"
        self.classes, self.palette, self.ignore_colors, self.gsd_m = _load_palette_yaml(
            palette_path
        )
        super().__init__(root, split, ids, max_unknown_fraction)

    def _find_pairs(self) -> list[_Pair]:
        return [
            _Pair(path.stem, path, _first_existing(self.root / "masks", path.stem))
            for path in _images_in(self.root / "images")
        ]

    def _layout_hint(self) -> str:
        return "expected images/<stem>.<ext> + masks/<stem>.png + palette.yaml"

    def _decode_mask(self, raw: np.ndarray, path: Path) -> tuple[np.ndarray, float]:
        if raw.ndim == 3:
            return palettes.match_colors(raw, self.palette, self.ignore_colors)
        valid = (raw < self.num_classes) | (raw == palettes.IGNORE_INDEX)
        labels = np.where(valid, raw, np.uint8(palettes.IGNORE_INDEX)).astype(np.uint8)
        return labels, float((~valid).mean())


def _load_palette_yaml(path: Path):
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a folder data set needs a palette.yaml with 'classes' and "
            f"'colors' (see docs/data.md)"
        )
    spec = yaml.safe_load(path.read_text()) or {}
    classes = tuple(str(c) for c in spec.get("classes", ()))
    colors = tuple(tuple(int(v) for v in c) for c in spec.get("colors", ()))
    ignore = tuple(tuple(int(v) for v in c) for c in spec.get("ignore_colors", ()))
    if not classes or len(colors) != len(classes) or any(len(c) != 3 for c in colors + ignore):
        raise ValueError(
            f"{path}: needs 'classes' (names) and 'colors' (one [R, G, B] per class); got "
            f"{len(classes)} classes and {len(colors)} colours"
        )
    gsd = spec.get("gsd_m")
    if gsd is not None and (not isinstance(gsd, (int, float)) or gsd <= 0):
        raise ValueError(
            f"{path}: gsd_m must be a positive number of metres per pixel, got {gsd!r}"
        )
    return classes, colors, ignore, None if gsd is None else float(gsd)


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _first_existing(folder: Path, stem: str) -> Path:
    """``folder/stem.<ext>`` for the first existing image suffix (``.png`` if none exists)."""
    for suffix in (".png", ".tif", ".tiff", ".bmp"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return folder / f"{stem}.png"


class SyntheticDataset(SegmentationDataset):
    """``count`` synthetic aerial scenes of ``size`` pixels (int or ``(H, W)``), seeded.

    Scene ``i`` is ``generate_scene(size, seed=(seed, i))``: the same arguments give the same
    pixels and labels, so labels never need storing.
    """

    classes = palettes.DEEPGLOBE_CLASSES
    palette = palettes.DEEPGLOBE_PALETTE
    gsd_m = 0.5

    def __init__(self, count: int, size: int | tuple[int, int], seed: int = 0) -> None:
        if count < 1:
            raise ValueError(f"synthetic data set needs count >= 1, got {count}")
        self.count, self.size, self.seed = count, size, seed

    @property
    def names(self) -> list[str]:
        return [f"synthetic_s{self.seed}_{i:04d}" for i in range(self.count)]

    def __getitem__(self, index: int) -> Sample:
        from uhr_seg_ros.data.synthetic import generate_scene

        if not 0 <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} synthetic scenes")
        image, label = generate_scene(self.size, seed=(self.seed, index))
        return Sample(image, label, self.names[index])


class SubsetDataset(SegmentationDataset):
    """The samples of ``dataset`` named in ``names``, in that order (held-out tiles removed,
    or an explicit list of tiles to score)."""

    def __init__(self, dataset: SegmentationDataset, names: Sequence[str]) -> None:
        index = {name: i for i, name in enumerate(dataset.names)}
        missing = [name for name in names if name not in index]
        if missing:
            raise FileNotFoundError(f"not in the data set: {', '.join(missing[:10])}")
        self.dataset = dataset
        self.classes, self.palette, self.gsd_m = dataset.classes, dataset.palette, dataset.gsd_m
        self._indices = [index[name] for name in names]
        self._names = list(names)

    @property
    def names(self) -> list[str]:
        return self._names

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[self._indices[index]]


def without_samples(dataset: SegmentationDataset, exclude: Sequence[str]) -> SubsetDataset:
    """``dataset`` less the samples named in ``exclude``; refuses to leave nothing."""
    unwanted = set(exclude)
    kept = [name for name in dataset.names if name not in unwanted]
    if not kept:
        raise ValueError(f"excluding {sorted(unwanted)[:10]} leaves no samples")
    return SubsetDataset(dataset, kept)


#: Seeds of synthetic splits: disjoint scene streams for train / val / test.
SYNTHETIC_SPLIT_SEEDS = {"train": 0, "all": 0, "val": 1, "test": 2}


def build_dataset(spec: str, split: str = "train") -> SegmentationDataset:
    """A data set from a ``KIND:ARG`` string (CLI and configs).

    ``deepglobe:DIR``, ``deepglobe512:DIR`` (the 512² quadrants), ``inria:DIR``, ``folder:DIR``
    (palette.yaml inside) or
    ``synthetic:COUNT@SIZE`` (SIZE is ``N`` or ``HxW``; the split picks the seed).
    """
    kind, sep, arg = spec.partition(":")
    if not sep or not arg:
        raise ValueError(
            f"data spec {spec!r} must be KIND:ARG, e.g. deepglobe:/data/deepglobe, "
            f"inria:/data/inria, folder:/data/mine or synthetic:8@2048"
        )
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    kind = kind.lower()
    if kind == "deepglobe":
        return DeepGlobeDataset(arg, split)
    if kind == "deepglobe512":
        return DeepGlobe512Dataset(arg, split)
    if kind == "inria":
        return InriaDataset(arg, split)
    if kind == "folder":
        return FolderDataset(arg, split)
    if kind == "synthetic":
        match = re.fullmatch(r"(\d+)@(\d+)(?:x(\d+))?", arg)
        if not match:
            raise ValueError(f"synthetic spec must be COUNT@SIZE or COUNT@HxW, got {arg!r}")
        count, first, second = int(match[1]), int(match[2]), match[3]
        size = (first, int(second)) if second else first
        return SyntheticDataset(count, size, seed=SYNTHETIC_SPLIT_SEEDS[split])
    raise ValueError(
        f"unknown data set kind {kind!r}; use deepglobe, deepglobe512, inria, folder or synthetic"
    )
