"""The package spec: what a team checks into its repo to describe one relocation workflow.

Every field documents itself (the descriptions become the JSON Schema editors use and the form the
Prefect UI renders). Cross-field rules live in `Spec._check_references`; file-system facts (does the
package exist, is a target root inside a source) in `Spec._check_paths`, which needs the spec
file's folder as validation context.
"""

from __future__ import annotations

import re
import string
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from flows.specfile import SpecFieldError
from tasks.access import Access, Duration
from tasks.sizes import parse_size

DEFAULT_MAX_WORKERS = 8
DEFAULT_MEMORY_LIMIT = "512MiB"
DEFAULT_CHUNK_SIZE = "8MiB"
DEFAULT_BATCH_ASSETS = 200
DEFAULT_BATCH_BYTES = "4GiB"
LAYOUTS = ("item-asset", "source-key")
TEMPLATE_FIELDS = frozenset(
    {"collection", "item_id", "asset_key", "ext", "source_key", "source_dir", "source_name"}
)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([kKMGT]i?)?[bB]?\s*$"},
            ],
            "description": "Bytes, or a size with a unit: 512MiB, 8MiB, 1GB.",
        }
    ),
]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Source(_Strict):
    """Where the locked bytes live: the package lock's own locations, or another lock."""

    prefix: str | None = Field(
        default=None,
        description="Package-lock rows whose href starts with this prefix "
        "(https://host/, s3://bucket/, or a folder). Default: every row.",
    )
    lock: Path | None = Field(
        default=None,
        description="Another asset lock describing the same assets elsewhere "
        "(e.g. the S3-shaped lock). Relative to the spec file.",
    )
    store: Access = Field(default_factory=Access, description="How to reach this source.")
    compare: list[Literal["size", "etag", "last_modified"]] = Field(
        default_factory=lambda: ["size", "etag", "last_modified"],
        description="Lock facts this store reproduces and that drift checks and validation "
        "compare (a mirror that keeps sizes but not ETags: [size]).",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if self.prefix is not None and self.lock is not None:
            raise SpecFieldError(("lock",), "give either prefix or lock, not both")
        if self.prefix is not None and "?" in self.prefix:
            raise SpecFieldError(
                ("prefix",), "a prefix cannot hold a query string (signed URLs are secrets)"
            )
        return self


class FileStore(_Strict):
    """A local (or mounted) folder."""

    type: Literal["file"] = "file"
    root: Path = Field(description="Folder that receives the assets; relative to the spec file.")


class S3Store(Access):
    """An S3 bucket on AWS or on any S3-compatible endpoint."""

    type: Literal["s3"] = "s3"
    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+$")
    prefix: str = Field(default="", description="Key prefix inside the bucket.")

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        parts = [part for part in value.split("/") if part]
        if any(part in {".", ".."} for part in parts):
            raise ValueError("a key prefix cannot contain '.' or '..' segments")
        return "/".join(parts)


TargetStore = Annotated[FileStore | S3Store, Field(discriminator="type")]


class AlternateName(_Strict):
    """How a target appears in each asset's `alternate` map (alternate-assets extension)."""

    key: Name | None = Field(default=None, description="Key in asset.alternate (default: target).")
    name: str | None = Field(
        default=None, description="The alternate's `alternate:name` (default: the key)."
    )


class Target(_Strict):
    """Storage the team controls, that receives a copy of every relocated asset."""

    store: TargetStore
    alternate: AlternateName = Field(default_factory=AlternateName)
    layout: str = Field(
        default="item-asset",
        description="item-asset: <root>/<item_id>/<asset_key><ext> (as stacpkg); source-key: "
        "the source's key; or a template using {collection}, {item_id}, {asset_key}, {ext}, "
        "{source_key}, {source_dir}, {source_name}.",
    )
    promote: bool = Field(
        default=False,
        description="Also write <target>.primary.items.parquet, in which this target's href "
        "is each asset's href and the original moves to alternate.original.",
    )

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, value: str) -> str:
        if value in LAYOUTS:
            return value
        if "{" not in value:
            raise ValueError(
                f"expected 'item-asset', 'source-key' or a template with {{item_id}}-style "
                f"fields, got {value!r}"
            )
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name}
        except ValueError as exc:
            raise ValueError(f"layout template {value!r} is malformed: {exc}") from exc
        unknown = fields - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(
                f"unknown layout field(s) {sorted(unknown)}; use {sorted(TEMPLATE_FIELDS)}"
            )
        if not fields & {"item_id", "source_key", "source_name"}:
            raise ValueError("a layout template must name {item_id}, {source_key} or {source_name}")
        return value


class AssetKeys(_Strict):
    include: list[str] = Field(default_factory=list, description="Asset keys (globs) to keep.")
    exclude: list[str] = Field(default_factory=list, description="Asset keys (globs) to drop.")


class Select(_Strict):
    """Which Items and assets this workflow touches (default: all that are locked)."""

    items: list[str] = Field(default_factory=list, description="Item ids (globs).")
    collections: list[str] = Field(default_factory=list, description="Collection ids.")
    assets: AssetKeys = Field(default_factory=AssetKeys)
    metadata_assets: bool = Field(
        default=False,
        description="When deriving a lock from Items, also lock assets keyed 'metadata' "
        "(stacpkg skips them unless asked).",
    )


class Retry(_Strict):
    """Retries of one asset copy on transient failures (connection errors, timeouts, 429, 5xx)."""

    attempts: int = Field(
        default=5, ge=1, le=50, description="Tries per asset, the first included."
    )
    initial_backoff: Duration = Field(
        default=timedelta(seconds=1), description="Wait before the 2nd try."
    )
    max_backoff: Duration = Field(
        default=timedelta(seconds=60), description="Longest wait between tries."
    )


class Batch(_Strict):
    """How assets are grouped into Prefect task runs (one task run per batch, never per asset)."""

    assets: int = Field(default=DEFAULT_BATCH_ASSETS, ge=1, le=100_000)
    bytes: Size = Field(default=DEFAULT_BATCH_BYTES)


class Relocate(_Strict):
    """How the bytes move."""

    source: Name | None = Field(
        default=None, description="The source to copy from (default: the first source)."
    )
    max_workers: int = Field(default=DEFAULT_MAX_WORKERS, ge=1, le=256)
    memory_limit: Size = Field(
        default=DEFAULT_MEMORY_LIMIT,
        description="Budget for buffers in flight; concurrency shrinks to stay within it.",
    )
    chunk_size: Size = Field(default=DEFAULT_CHUNK_SIZE, description="Read and part size.")
    batch: Batch = Field(default_factory=Batch)
    retry: Retry = Field(default_factory=Retry)
    on_drift: Literal["refuse", "copy"] = Field(
        default="refuse",
        description="When a source's size, ETag or Last-Modified differs from its lock: refuse "
        "the copy (outcome drifted) or copy and record the new facts.",
    )
    fail_fast: bool = Field(default=False, description="Stop at the first failed asset.")

    @model_validator(mode="after")
    def _budget(self) -> Relocate:
        if self.chunk_size < 64 * 1024:
            raise SpecFieldError(("chunk_size",), "chunk_size must be at least 64KiB")
        if self.memory_limit < 4 * self.chunk_size:
            raise SpecFieldError(
                ("memory_limit",), "memory_limit must hold at least 4 chunks (one asset in flight)"
            )
        return self


class Validate(_Strict):
    """Dual validation: the remote locks and the relocated ones, after every run."""

    locks: list[Name] = Field(description="Sources and targets whose locks are validated.")
    checksums: bool | list[Name] = Field(
        default=False,
        description="Also read the bytes and compare SHA-256 with the lock's file_checksum: "
        "true for every lock, or a list of names.",
    )

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"locks": data} if isinstance(data, list) else data

    def with_checksums(self, name: str) -> bool:
        return self.checksums is True or (
            isinstance(self.checksums, list) and name in self.checksums
        )


class Spec(_Strict):
    """A package spec: sources, targets, alternate keys, and what to validate."""

    name: str = Field(min_length=1, description="Names the run's artifacts and deployments.")
    package: Path | None = Field(
        default=None, description="A stacpkg package folder (items.parquet + assets.lock.parquet)."
    )
    stac: Path | None = Field(
        default=None,
        description="STAC Items without a lock (JSON Item or ItemCollection, NDJSON, "
        "stac-geoparquet): the lock is derived first and the package written to outputs.",
    )
    items: Path | None = Field(
        default=None, description="The STAC view to enrich (default: the package's items)."
    )
    select: Select = Field(default_factory=Select)
    sources: dict[Name, Source] = Field(min_length=1)
    targets: dict[Name, Target] = Field(default_factory=dict)
    relocate: Relocate = Field(default_factory=Relocate)
    validate_: Validate | None = Field(default=None, alias="validate")
    outputs: Path = Field(description="Folder for the relocated locks, items, validation, report.")

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, validate_default=True
    )

    @model_validator(mode="after")
    def _check_references(self) -> Spec:
        if (self.package is None) == (self.stac is None):
            raise SpecFieldError(("package",), "give exactly one of package or stac")
        clash = set(self.sources) & set(self.targets)
        if clash:
            name = min(clash)
            raise SpecFieldError(("targets", name), f"{name!r} names both a source and a target")
        if self.relocate.source and self.relocate.source not in self.sources:
            raise SpecFieldError(
                ("relocate", "source"),
                f"no source named {self.relocate.source!r} (sources: {', '.join(self.sources)})",
            )
        known = {*self.sources, *self.targets}
        if self.validate_:
            for index, name in enumerate(self.validate_.locks):
                if name not in known:
                    raise SpecFieldError(
                        ("validate", "locks", index),
                        f"no source or target named {name!r} (known: {', '.join(sorted(known))})",
                    )
        keys: dict[str, str] = {}
        for name in self.targets:
            key = self.alternate_key(name)
            if key in keys:
                raise SpecFieldError(
                    ("targets", name, "alternate", "key"),
                    f"alternate key {key!r} is already used by target {keys[key]!r}",
                )
            keys[key] = name
        return self

    @model_validator(mode="after")
    def _check_paths(self, info: ValidationInfo) -> Spec:
        base = (info.context or {}).get("base_dir")
        if base is None:
            return self
        base = Path(base)
        _check_input(base, self.package, ("package",), package=True)
        _check_input(base, self.stac, ("stac",))
        _check_input(base, self.items, ("items",))
        for name, source in self.sources.items():
            _check_input(base, source.lock, ("sources", name, "lock"))
        inputs = [base / p for p in (self.package, self.stac) if p is not None]
        inputs += [_folder_of(base, s.prefix) for s in self.sources.values() if s.prefix]
        outputs = (base / self.outputs).resolve()
        for name, target in self.targets.items():
            if not isinstance(target.store, FileStore):
                continue
            root = (base / target.store.root).resolve()
            loc = ("targets", name, "store", "root")
            if root == outputs:
                raise SpecFieldError(loc, "a target root cannot be the outputs folder itself")
            for folder in (f.resolve() for f in inputs if f is not None):
                if root == folder or folder in root.parents or root in folder.parents:
                    raise SpecFieldError(
                        loc, f"the target root {root} overlaps the source folder {folder}"
                    )
        return self

    def alternate_key(self, target: str) -> str:
        return self.targets[target].alternate.key or target

    def alternate_name(self, target: str) -> str:
        alternate = self.targets[target].alternate
        return alternate.name or alternate.key or target

    @property
    def relocate_source(self) -> str:
        return self.relocate.source or next(iter(self.sources))

    @property
    def slug(self) -> str:
        """The spec name as Prefect artifact keys need it: lowercase letters, digits, dashes."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "spec"


def _check_input(base: Path, path: Path | None, loc: tuple, *, package: bool = False) -> None:
    if path is None:
        return
    full = base / path
    if not full.exists():
        raise SpecFieldError(loc, f"{full} does not exist")
    if package:
        missing = [n for n in ("items.parquet", "assets.lock.parquet") if not (full / n).is_file()]
        if missing:
            raise SpecFieldError(
                loc, f"{full} is not a stacpkg package (missing {', '.join(missing)})"
            )


def _folder_of(base: Path, prefix: str) -> Path | None:
    if prefix.startswith("file://"):
        return Path(prefix.removeprefix("file://"))
    if "://" in prefix:
        return None
    return base / prefix
