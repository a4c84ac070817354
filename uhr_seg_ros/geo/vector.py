"""Per-class polygons from a mask GeoTIFF, in the raster's CRS (GeoPackage or GeoJSON).

GDAL's polygonize walks the mask file scan line by scan line (the raster is never loaded);
the polygons themselves are held until written, so memory grows with their number, not with
the raster's area. ``min_area`` (in CRS units², e.g. m²) drops specks; ``simplify`` (CRS
units) is a topology-preserving Douglas–Peucker tolerance (shapely).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import MASK_NODATA, require

log = logging.getLogger(__name__)

VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json")


@dataclass(frozen=True)
class Polygon:
    geometry: dict[str, Any]  # GeoJSON-like, in the raster's CRS
    class_id: int
    class_name: str
    area: float


def iter_polygons(
    mask_path: str | Path, *, min_area: float = 0.0, simplify: float = 0.0
) -> Iterator[Polygon]:
    """Connected regions of each class of a mask written by :class:`~.mosaic.MaskWriter`."""
    rasterio = require("rasterio")
    from rasterio.features import shapes

    shapely_geometry = require("shapely.geometry") if simplify > 0 or min_area > 0 else None
    with rasterio.open(mask_path) as ds:
        names = _class_names(ds)
        for geometry, value in shapes(rasterio.band(ds, 1), transform=ds.transform):
            class_id = int(value)
            if class_id == MASK_NODATA:
                continue
            if shapely_geometry is not None:
                shape = shapely_geometry.shape(geometry)
                if simplify > 0:
                    shape = shape.simplify(simplify, preserve_topology=True)
                if shape.is_empty or shape.area < min_area:
                    continue
                geometry, area = shapely_geometry.mapping(shape), float(shape.area)
            else:
                area = _ring_area(geometry["coordinates"][0]) - sum(
                    _ring_area(ring) for ring in geometry["coordinates"][1:]
                )
            name = names[class_id] if class_id < len(names) else f"class_{class_id}"
            yield Polygon(geometry, class_id, name, area)


def write_polygons(
    mask_path: str | Path, out: str | Path, *, min_area: float = 0.0, simplify: float = 0.0
) -> int:
    """Write the polygons of ``mask_path`` to ``out`` (``.gpkg`` needs pyogrio, ``.geojson``
    is written directly); returns how many."""
    rasterio = require("rasterio")
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in VECTOR_SUFFIXES:
        raise ValueError(f"--vector {out}: use a .gpkg or .geojson file name")
    with rasterio.open(mask_path) as ds:
        crs = ds.crs
    polygons = iter_polygons(mask_path, min_area=min_area, simplify=simplify)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gpkg":
        return _write_gpkg(polygons, out, crs)
    return _write_geojson(polygons, out, crs)


def _write_geojson(polygons: Iterator[Polygon], out: Path, crs: Any) -> int:
    """Streamed feature by feature. The CRS goes in the (pre-RFC 7946) ``crs`` member, which
    GDAL and QGIS read, since the coordinates stay in the raster's CRS."""
    count = 0
    partial = out.with_name(out.name + ".partial")
    with partial.open("w") as fh:
        fh.write('{"type": "FeatureCollection",\n')
        if crs is not None:
            epsg = crs.to_epsg()
            name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_wkt()
            fh.write(f'"crs": {json.dumps({"type": "name", "properties": {"name": name}})},\n')
        fh.write('"features": [\n')
        for polygon in polygons:
            feature = {
                "type": "Feature",
                "geometry": polygon.geometry,
                "properties": {
                    "class_id": polygon.class_id,
                    "class_name": polygon.class_name,
                    "area": round(polygon.area, 6),
                },
            }
            fh.write((",\n" if count else "") + json.dumps(feature))
            count += 1
        fh.write("\n]}\n")
    partial.replace(out)
    return count


def _write_gpkg(polygons: Iterator[Polygon], out: Path, crs: Any) -> int:
    import numpy as np

    pyogrio_raw = require("pyogrio.raw")
    shapely = require("shapely")
    from shapely.geometry import shape

    rows = list(polygons)
    geometry = np.array([shapely.to_wkb(shape(p.geometry)) for p in rows], dtype=object)
    fields = np.array(["class_id", "class_name", "area"], dtype=object)
    field_data = [
        np.array([p.class_id for p in rows], dtype=np.int32),
        np.array([p.class_name for p in rows], dtype=object),
        np.array([p.area for p in rows], dtype=np.float64),
    ]
    out.unlink(missing_ok=True)
    pyogrio_raw.write(
        out,
        geometry,
        field_data,
        fields,
        layer=out.stem,
        driver="GPKG",
        geometry_type="Polygon",
        crs=crs.to_wkt() if crs is not None else None,
    )
    return len(rows)


def _class_names(ds: Any) -> list[str]:
    try:
        return list(json.loads(ds.tags().get("CLASS_NAMES", "[]")))
    except ValueError:
        return []


def _ring_area(ring: list[tuple[float, float]]) -> float:
    """Shoelace area of one closed ring (absolute)."""
    total = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(ring):
        total += x0 * y1 - x1 * y0
    return abs(total) / 2.0
