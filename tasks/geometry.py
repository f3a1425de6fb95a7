"""GeoJSON ⇄ ISO WKB for the items table's `geometry` column, without a GEOS dependency.

STAC geometries are small and few per item, so a plain reader and writer are enough; shapely would
be a large native dependency for a handful of structs.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_CODES = {
    "Point": 1,
    "LineString": 2,
    "Polygon": 3,
    "MultiPoint": 4,
    "MultiLineString": 5,
    "MultiPolygon": 6,
    "GeometryCollection": 7,
}
_NAMES = {code: name for name, code in _CODES.items()}
_MEMBER = {"MultiPoint": "Point", "MultiLineString": "LineString", "MultiPolygon": "Polygon"}
_EWKB_Z, _EWKB_M, _EWKB_SRID = 0x80000000, 0x40000000, 0x20000000
_ISO_Z = 1000
_XY, _XYZ = 2, 3
_NESTING = {"Point": 0, "LineString": 1, "MultiPoint": 1, "Polygon": 2, "MultiLineString": 2}


class GeometryError(ValueError):
    """A geometry that cannot be converted; the caller adds which item it belongs to."""


def wkb_to_geojson(data: bytes) -> dict[str, Any]:
    """Decode ISO or EWKB (2D or Z, either byte order) into a GeoJSON geometry."""
    reader = _Reader(bytes(data))
    try:
        geometry = reader.geometry()
    except struct.error:
        raise GeometryError("truncated WKB geometry") from None
    if reader.pos != len(reader.data):
        raise GeometryError(f"{len(reader.data) - reader.pos} trailing bytes after a WKB geometry")
    return geometry


def geojson_to_wkb(geometry: Mapping[str, Any]) -> bytes:
    """Encode a GeoJSON geometry as little-endian ISO WKB, 3D when its positions carry a z."""
    return _write(geometry, _dimensions(geometry))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return values

    def geometry(self, expected: str | None = None) -> dict[str, Any]:
        (order,) = self._unpack("B")
        if order not in (0, 1):
            raise GeometryError(f"bad WKB byte order marker {order}")
        endian = "<" if order == 1 else ">"
        (code,) = self._unpack(endian + "I")
        has_z = bool(code & _EWKB_Z)
        if code & _EWKB_M:
            raise GeometryError("WKB geometries with M values are not supported")
        if code & _EWKB_SRID:
            self._unpack(endian + "I")
        dimension, base = divmod(code & 0x0FFFFFFF, _ISO_Z)
        if dimension not in (0, 1) or base not in _NAMES:
            raise GeometryError(f"unsupported WKB geometry type code {code}")
        name = _NAMES[base]
        if expected is not None and name != expected:
            raise GeometryError(f"a {expected} member cannot be a {name}")
        width = _XYZ if has_z or dimension == 1 else _XY
        if name == "GeometryCollection":
            (count,) = self._unpack(endian + "I")
            return {"type": name, "geometries": [self.geometry() for _ in range(count)]}
        return {"type": name, "coordinates": self._coordinates(name, endian, width)}

    def _coordinates(self, name: str, endian: str, width: int) -> list[Any]:
        if name == "Point":
            point = list(self._unpack(f"{endian}{width}d"))
            return [] if all(math.isnan(c) for c in point) else point
        (count,) = self._unpack(endian + "I")
        if name in _MEMBER:
            return [self.geometry(_MEMBER[name])["coordinates"] for _ in range(count)]
        if name == "LineString":
            return [list(self._unpack(f"{endian}{width}d")) for _ in range(count)]
        return [self._coordinates("LineString", endian, width) for _ in range(count)]


def _write(geometry: Mapping[str, Any], width: int) -> bytes:
    name = geometry.get("type") if isinstance(geometry, dict) else None
    if name not in _CODES:
        raise GeometryError(f"unsupported GeoJSON geometry type {name!r}")
    header = struct.pack("<BI", 1, _CODES[name] + (_ISO_Z if width == _XYZ else 0))
    if name == "GeometryCollection":
        members = _list(geometry.get("geometries"), "geometries")
        return header + _count(members) + b"".join(_write(m, width) for m in members)
    coordinates = _list(geometry.get("coordinates"), "coordinates")
    if name in _MEMBER:
        member = _MEMBER[name]
        return (
            header
            + _count(coordinates)
            + b"".join(_write({"type": member, "coordinates": c}, width) for c in coordinates)
        )
    return header + _body(name, coordinates, width)


def _body(name: str, coordinates: Sequence[Any], width: int) -> bytes:
    if name == "Point":
        if not coordinates:
            return struct.pack(f"<{width}d", *[math.nan] * width)
        return _position(coordinates, width)
    if name == "LineString":
        return _count(coordinates) + b"".join(_position(p, width) for p in coordinates)
    rings = [_list(ring, "coordinates") for ring in coordinates]
    return _count(rings) + b"".join(_body("LineString", ring, width) for ring in rings)


def _position(position: Sequence[Any], width: int) -> bytes:
    if not isinstance(position, list | tuple) or len(position) < width:
        raise GeometryError(f"bad position {position!r} (expected {width} numbers)")
    try:
        return struct.pack(f"<{width}d", *position[:width])
    except struct.error:
        raise GeometryError(f"bad position {position!r} (expected numbers)") from None


def _count(values: Sequence[Any]) -> bytes:
    return struct.pack("<I", len(values))


def _list(value: object, name: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise GeometryError(f"GeoJSON {name} must be an array, got {value!r}")
    return list(value)


def _dimensions(geometry: Mapping[str, Any]) -> int:
    """3 when the first position has a z; WKB holds one dimension per geometry."""
    widths = set(_widths(geometry))
    if any(width < _XY for width in widths):
        raise GeometryError("a GeoJSON position needs at least 2 numbers")
    if len(widths) > 1:
        raise GeometryError("GeoJSON geometry mixes 2D and 3D positions")
    return _XYZ if widths == {_XYZ} else _XY


def _widths(geometry: Mapping[str, Any]) -> list[int]:
    if not isinstance(geometry, dict):
        return []
    if geometry.get("type") == "GeometryCollection":
        members = geometry.get("geometries")
        return [w for m in members for w in _widths(m)] if isinstance(members, list) else []
    nesting = _NESTING.get(str(geometry.get("type")), 3)
    positions = [geometry.get("coordinates")]
    for _ in range(nesting):
        positions = [p for group in positions if isinstance(group, list | tuple) for p in group]
    return [min(len(p), _XYZ) for p in positions if isinstance(p, list | tuple) and p]
