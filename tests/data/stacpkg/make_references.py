"""Regenerate the stacpkg 0.1.4 reference outputs in this folder, with stacpkg itself.

Needs Python 3.13 with `stacpkg==0.1.4` installed (it brings pyarrow and obstore); stacflow is
not needed, and nothing here is needed by the tests, which only read what this script wrote:

    python3.13 -m venv /tmp/stacpkg && /tmp/stacpkg/bin/pip install stacpkg==0.1.4
    /tmp/stacpkg/bin/python tests/data/stacpkg/make_references.py

It writes, by running the `stacpkg` command line exactly as its tutorials do:

awkward/      a package of awkward names (spaces, accents, `+`, leading dots, percent signs,
              extensions in the asset key, no extension, double extensions, a signed URL, ...)
              built by `stacpkg build --no-probe-metadata`, so rows without `file:size` have
              null facts as `--keep-going` leaves them; and the locks `stacpkg asset-lock
              relocate --dry-run` plans from it for a folder and a bucket, in both layouts.
collide/      names that stacpkg's item-asset layout maps to one key, and its plan for them.
tutorial/     the "Relocate Assets" tutorial on the oam-austria fixture: the S3-shaped dry-run
              lock, `items enrich` with it, the relocation to a folder (bytes served from a
              loopback origin), the tutorial's add-alternate / promote / derive / enrich dance,
              and `asset-lock validate` of the local lock.

Folder copies land under LOCAL_ROOT, a fixed path, so the tables that name them are
reproducible; tests compare them with their own folder put in its place.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
OAM = HERE.parent / "oam-austria"
ORIGIN = "https://assets.example.test"
SIGNATURE = "X-Amz-Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f0&X-Amz-Expires=3600"
LOCAL_ROOT = Path("/tmp/stacpkg-reference/local-assets")
BUCKET = "relocated"
S3_ENDPOINT = "https://s3.example.test"
OAM_PREFIX = "https://oin-hotosm-temp.s3.amazonaws.com/"

# (item id, asset key, href path as written in the Item, file:size given?)
AWKWARD = [
    ("scene 01", "ortho image", "scene%2001/ortho%20image.tif", False),
    ("café-münchen", "visual", "caf%C3%A9/visual.tif", True),
    ("a+b", "data", "a+b/data.tif", False),
    (".hidden", ".thumbnail", "hidden/thumb.png", True),
    ("100%", "pct", "pct/100%25.tif", False),
    ("ext-in-key", "data.tif", "ext/data.tif", True),
    ("ext-in-key-upper", "data.TIF", "ext2/data.tif", False),
    ("ext-in-key-other", "x.tif", "up/x.TIF", True),
    ("no-extension", "readme", "noext/README", False),
    ("double-extension", "archive", "dbl/archive.tar.gz", True),
    ("dotfile", "config", "dot/.env", False),
    ("trailing-dot-name", "x", "trail/file.", True),
    ("encoded-extension", "weird", "enc/file.t%20f", False),
    ("unicode-file-name", "vis", "uni/%C3%BCber.tif", True),
    ("  padded  ", "asset", "pad/a.tif", False),
    ("a//b", "x/y", "slash/x.tif", True),
    ("...", "..", "dots/d.tif", False),
    ("___", "_", "under/u.png", True),
    ("a=b", "k=v", "eq/e.tif", False),
    ("UPPER.Case", "Mixed.Key", "case/c.JPG", True),
    ("id.with.dots", "asset.with.dots", "dots2/file.jp2", False),
    ("sp ace", "multi   space", "ms/m.tif", True),
    ("emoji🙂", "🙂", "emoji/e.png", False),
    ("hash#id", "q?key", "hash/h.tif", True),
    ("semi;colon", "comma,key", "semi/%3Bx.tif", False),
    ("amp&", "a&b", "amp/a%26b.tif", True),
    ("tilde~", "t~", "tilde/~t.tif", False),
    ("paren(1)", "[bracket]", "paren/(1).tif", True),
    ("quote'id", 'q"k', "quote/q%22.tif", False),
    ("long-suffix", "ls", "ls/file.verylongextension", True),
    ("dot-in-folder", "sd", "dir.with.dot/noext", False),
    ("percent-folder", "pd", "100%25%20done/f.tif", True),
    ("encoded-slash", "es", "a%2Fb/f.tif", False),
    ("double-encoded", "de", "de/f%2520g.tif", True),
    ("-dash", "-leading", "dash/-f.tif", False),
    ("trailing.", "key.", "tr/f.tif", True),
    ("ünïcødé", "ключ", "cyr/%D0%BA.tif", False),
    ("signed", "visual", "signed/v.tif?" + SIGNATURE, False),
]
# Pairs that stacpkg's item-asset layout sends to one key.
COLLIDING = [
    ("a/b", "x", "c1/x.tif"),
    ("a_b", "x", "c2/x.tif"),
    ("scene 01", "v", "c3/v.tif"),
    ("scene_01", "v", "c4/v.tif"),
    ("same", "data.tif", "c5/data.tif"),
    ("same", "data", "c6/data.tif"),
]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="stacpkg-references-") as scratch:
        work = Path(scratch)
        awkward(work)
        collide(work)
        tutorial(work)
    print(f"wrote references under {HERE}")


# --- awkward names -------------------------------------------------------------------------------


def awkward(work: Path) -> None:
    out = _fresh(HERE / "awkward")
    corpus = []
    items = []
    for index, (item_id, asset_key, path, sized) in enumerate(AWKWARD):
        data = _bytes_of(index, item_id, asset_key)
        asset = {"href": f"{ORIGIN}/{path}", "roles": ["data"]}
        if sized:
            asset["file:size"] = len(data)
        items.append(_item(item_id, {asset_key: asset}))
        corpus.append(
            {
                "item_id": item_id,
                "asset_key": asset_key,
                "href": asset["href"],
                "origin_path": unquote(urlsplit(asset["href"]).path.lstrip("/")),
                "size": len(data),
                "seed": index,
            }
        )
    _write_json(out / "corpus.json", corpus)
    package = _build(work / "awkward", items)
    shutil.copytree(package, out / "package")
    lock = package / "assets.lock.parquet"
    plans = {
        "file.item-asset": ["--store-type", "file", "--key", f"{LOCAL_ROOT}/"],
        "file.source-key": [
            "--store-type",
            "file",
            "--key",
            f"{LOCAL_ROOT}/",
            "--layout",
            "source-key",
        ],
        "s3.item-asset": [
            "--store-type",
            "s3",
            "--store-container",
            BUCKET,
            "--store-endpoint-url",
            S3_ENDPOINT,
            "--key",
            "copies/",
        ],
    }
    for name, options in plans.items():
        _dry_run(lock, out / f"plan.{name}.assets.lock.parquet", f"{ORIGIN}/", options)


def collide(work: Path) -> None:
    out = _fresh(HERE / "collide")
    items: dict[str, dict] = {}
    for item_id, asset_key, path in COLLIDING:
        item = items.setdefault(item_id, _item(item_id, {}))
        item["assets"][asset_key] = {"href": f"{ORIGIN}/{path}", "roles": ["data"]}
    package = _build(work / "collide", list(items.values()))
    shutil.copytree(package, out / "package")
    _dry_run(
        package / "assets.lock.parquet",
        out / "plan.file.item-asset.assets.lock.parquet",
        f"{ORIGIN}/",
        ["--store-type", "file", "--key", f"{LOCAL_ROOT}/"],
    )


# --- the tutorial --------------------------------------------------------------------------------


def tutorial(work: Path) -> None:
    """The package tutorial's S3 step, then every step of "Relocate Assets", as its text says."""
    out = _fresh(HERE / "tutorial")
    package = OAM / "openaerialmap-austria.pkg"
    s3_lock = out / "openaerialmap-austria.s3.assets.lock.parquet"
    _dry_run(
        package / "assets.lock.parquet",
        s3_lock,
        OAM_PREFIX,
        [
            "--store-type",
            "s3",
            "--store-container",
            "oin-hotosm-temp",
            "--store-endpoint-url",
            "https://s3.amazonaws.com",
            "--layout",
            "source-key",
        ],
    )
    enriched = out / "openaerialmap-austria.enriched.items.parquet"
    _pipe(
        [
            ["items", "from-parquet", package / "items.parquet"],
            ["items", "enrich", "--asset-lock", _stream(work, s3_lock), "--alternate-key", "s3"],
            ["items", "to-parquet", enriched],
        ]
    )
    _dry_run(
        package / "assets.lock.parquet",
        out / "openaerialmap-austria.local.planned.assets.lock.parquet",
        OAM_PREFIX,
        ["--store-type", "file", "--key", f"{LOCAL_ROOT}/"],
    )
    shutil.rmtree(LOCAL_ROOT.parent, ignore_errors=True)
    LOCAL_ROOT.mkdir(parents=True)
    with _origin(OAM / "origin") as url:
        loopback = work / "loopback.assets.lock.parquet"
        _rehost(package / "assets.lock.parquet", loopback, OAM_PREFIX.rstrip("/"), url)
        relocated = out / "openaerialmap-austria.local.asset-lock.parquet"
        _pipe(
            [
                ["asset-lock", "from-parquet", loopback],
                [
                    "asset-lock",
                    "relocate",
                    "--source-prefix",
                    f"{url}/",
                    "--store-type",
                    "file",
                    "--key",
                    f"{LOCAL_ROOT}/",
                    "--max-workers",
                    "4",
                    "--memory-limit-bytes",
                    "512MiB",
                    "--chunk-size-bytes",
                    "8MiB",
                ],
                ["asset-lock", "to-parquet", relocated],
            ]
        )
    primary = work / "openaerialmap-austria.local-primary.items.parquet"
    _pipe(
        [
            ["items", "from-parquet", enriched],
            [
                "items",
                "add-alternate",
                "--asset-lock",
                _stream(work, relocated),
                "--alternate-key",
                "original",
                "--alternate-name",
                "local",
            ],
            ["items", "promote-alternate", "--alternate-key", "original", "--mode", "switch"],
            ["items", "to-parquet", primary],
        ]
    )
    local_lock = out / "openaerialmap-austria.local.assets.lock.parquet"
    _pipe(
        [
            ["items", "from-parquet", primary],
            ["asset-lock", "derive"],
            ["asset-lock", "to-parquet", local_lock],
        ]
    )
    _pipe(
        [
            ["items", "from-parquet", enriched],
            [
                "items",
                "enrich",
                "--asset-lock",
                _stream(work, local_lock),
                "--alternate-key",
                "local",
            ],
            ["items", "to-parquet", out / "openaerialmap-austria.s3-local.items.parquet"],
        ]
    )
    lines = _pipe(
        [["asset-lock", "from-parquet", local_lock], ["asset-lock", "validate"]],
        capture=True,
    )
    (out / "local.validate.jsonl").write_text(lines)
    shutil.rmtree(LOCAL_ROOT.parent)


# --- running stacpkg -----------------------------------------------------------------------------


def _stacpkg(*args: object) -> list[str]:
    return [sys.executable, "-m", "stacpkg", *map(str, args)]


def _pipe(stages: list[list[object]], *, capture: bool = False) -> str:
    """`stacpkg a | stacpkg b | ...`, failing loudly if a stage fails (validate may exit 1).

    stacpkg 0.1.4 sometimes dies of SIGSEGV or SIGABRT at interpreter exit after its async
    obstore calls, its work done; such a pipeline is run again, from the start.
    """
    for _ in range(5):
        output, codes = _run_pipeline(stages, capture=capture)
        if not any(code in (-signal.SIGSEGV, -signal.SIGABRT) for code in codes):
            break
    for stage, code in zip(stages, codes, strict=True):
        if code != 0 and not (code == 1 and stage[-1] == "validate"):
            raise SystemExit(f"stacpkg {' '.join(map(str, stage))} failed (exit {code})")
    return output


def _run_pipeline(stages: list[list[object]], *, capture: bool) -> tuple[str, list[int]]:
    env = {**os.environ, "STACPKG_OBSTORE_ALLOW_HTTP": "1"}
    processes: list[subprocess.Popen[bytes]] = []
    upstream = None
    for index, stage in enumerate(stages):
        last = index == len(stages) - 1
        process = subprocess.Popen(
            _stacpkg(*stage),
            stdin=upstream,
            stdout=subprocess.PIPE if (capture or not last) else None,
            env=env,
        )
        if upstream is not None:
            upstream.close()
        upstream = process.stdout
        processes.append(process)
    output = processes[-1].communicate()[0] if capture else b""
    return output.decode(), [process.wait() for process in processes]


def _build(folder: Path, items: list[dict]) -> Path:
    source = folder / "items.json"
    folder.mkdir(parents=True)
    _write_json(source, {"type": "FeatureCollection", "features": items})
    package = folder / "package"
    _pipe([["items", "from-json", source], ["build", package, "--no-probe-metadata"]])
    return package


def _dry_run(lock: Path, output: Path, prefix: str, options: list[str]) -> None:
    _pipe(
        [
            ["asset-lock", "from-parquet", lock],
            ["asset-lock", "relocate", "--source-prefix", prefix, "--dry-run", *options],
            ["asset-lock", "to-parquet", output],
        ]
    )


def _stream(work: Path, lock: Path) -> Path:
    """`<(stacpkg asset-lock from-parquet LOCK)`, as a file: --asset-lock wants an IPC stream."""
    target = work / f"{lock.stem}.arrows"
    with target.open("wb") as sink:
        subprocess.run(_stacpkg("asset-lock", "from-parquet", lock), stdout=sink, check=True)
    return target


def _rehost(lock: Path, output: Path, old: str, new: str) -> None:
    """The same lock with its origin moved to a loopback server (stacpkg has no mirror option)."""
    table = pq.read_table(lock)
    containers = [
        new + value[len(old) :] if value and value.startswith(old) else value
        for value in table.column("store_container").to_pylist()
    ]
    index = table.schema.get_field_index("store_container")
    table = table.set_column(index, table.schema.field(index), pa.array(containers, pa.string()))
    pq.write_table(table, output)


@contextlib.contextmanager
def _origin(root: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


# --- helpers -------------------------------------------------------------------------------------


def _item(item_id: str, assets: dict) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": item_id,
        "collection": "awkward",
        "geometry": {"type": "Point", "coordinates": [16.37, 48.21]},
        "bbox": [16.37, 48.21, 16.37, 48.21],
        "properties": {"datetime": "2024-01-02T03:04:05Z"},
        "links": [],
        "assets": assets,
    }


def _bytes_of(seed: int, item_id: str, asset_key: str) -> bytes:
    """What the tests serve for corpus row `seed`: they rebuild it from corpus.json alone."""
    return (f"{seed}:{item_id}/{asset_key}\n" * (seed + 1)).encode()


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
