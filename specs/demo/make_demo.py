"""Build the offline demo package: a small drone survey, locked the way stacpkg locks it.

Run once to (re)create `demo.pkg/` and `origin/` next to this file; both are committed, so the
demo needs neither the network nor this script. Deterministic: the same bytes every time.

    python specs/demo/make_demo.py
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

from stacflow.tasks.checksum import sha256_multihash
from stacflow.tasks.items import table_from_items, write_items_table
from stacflow.tasks.locations import parse_href
from stacflow.tasks.locks import LockRow, write_lock

HERE = Path(__file__).parent
ORIGIN = "https://demo-imagery.stacflow.invalid"
LAST_MODIFIED = "2024-05-01T10:00:00+00:00"
COLLECTION = "demo-drone-survey"
SURVEYS = [
    ("flight-01", "Weinberg Nord - 2024-04-28", (16.3700, 48.2100), 640_123),
    ("flight-02", "Weinberg Sued - 2024-04-28", (16.3750, 48.2050), 812_777),
    ("flight-03", "Donauufer - 2024-04-29", (16.3900, 48.2200), 1_048_579),
]
TIFF_MAGIC = b"II*\x00"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def main() -> None:
    rng = random.Random(20240501)
    shutil.rmtree(HERE / "origin", ignore_errors=True)
    items, lock = [], []
    for index, (item_id, title, (lon, lat), size) in enumerate(SURVEYS):
        upload = f"uploads/{item_id}"
        files = {
            "visual": (f"{upload}/ortho.tif", TIFF_MAGIC + rng.randbytes(size - 4)),
            "thumbnail": (f"{upload}/ortho.png", PNG_MAGIC + rng.randbytes(18_000 + index)),
            "metadata": (f"{upload}/ortho_meta.json", json.dumps({"flight": item_id}).encode()),
        }
        for key, data in files.values():
            path = HERE / "origin" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        items.append(
            _item(item_id, title, lon, lat, {k: f"{ORIGIN}/{p}" for k, (p, _) in files.items()})
        )
        for asset_key in ("thumbnail", "visual"):  # stacpkg does not lock `metadata` assets
            path, data = files[asset_key]
            lock.append(
                LockRow.at(
                    item_id,
                    asset_key,
                    parse_href(f"{ORIGIN}/{path}"),
                    size_bytes=len(data),
                    etag=f'"{hashlib.md5(data).hexdigest()}"',  # noqa: S324 - S3's single-part ETag
                    last_modified=LAST_MODIFIED,
                    file_checksum=sha256_multihash(hashlib.sha256(data).digest()),
                )
            )
    write_items_table(HERE / "demo.pkg" / "items.parquet", table_from_items(items))
    write_lock(HERE / "demo.pkg" / "assets.lock.parquet", lock)
    print(f"wrote {len(items)} items and {len(lock)} locked assets under {HERE}")


def _item(item_id: str, title: str, lon: float, lat: float, hrefs: dict[str, str]) -> dict:
    box = [lon, lat, lon + 0.004, lat + 0.003]
    ring = [
        [box[0], box[1]],
        [box[2], box[1]],
        [box[2], box[3]],
        [box[0], box[3]],
        [box[0], box[1]],
    ]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
        "id": item_id,
        "collection": COLLECTION,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": box,
        "properties": {
            "title": title,
            "datetime": "2024-04-28T10:15:00Z",
            "gsd": 0.03,
            "platform": "uav",
            "license": "CC-BY-4.0",
            "proj:epsg": 4326,
            "providers": [{"name": "stacflow demo", "roles": ["producer", "host"]}],
        },
        "links": [],
        "assets": {
            "visual": {
                "href": hrefs["visual"],
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data", "visual"],
                "title": title,
            },
            "thumbnail": {"href": hrefs["thumbnail"], "type": "image/png", "roles": ["thumbnail"]},
            "metadata": {
                "href": hrefs["metadata"],
                "type": "application/json",
                "roles": ["metadata"],
            },
        },
    }


if __name__ == "__main__":
    main()
