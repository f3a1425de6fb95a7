"""The package spec: what a team checks into its repo to describe one relocation workflow.

Every field documents itself (the descriptions become the JSON Schema editors use and the form the
Prefect UI renders). Cross-field rules live in `Spec._check_references`; file-system facts (does the
package exist, is a target root inside a source) in `Spec._check_paths`, which needs the spec
file's folder as validation context.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from stacflow.flows.specfile import Loc, SpecFieldError
from stacflow.tasks.access import Access, Duration, SpecPath, url_problem
from stacflow.tasks.errors import scrub
from stacflow.tasks.sizes import format_size, parse_size
from stacflow.tasks.stores import TargetStore, backend

DEFAULT_MAX_WORKERS = 8
DEFAULT_MEMORY_LIMIT = "512MiB"
DEFAULT_CHUNK_SIZE = "8MiB"
# A Prefect task run costs about 0.1 s of API round trips and server CPU on the run's cores:
# 2,000 small assets (about 2 s of copying) keep that near 5% (`python -m benchmarks.run`,
# 10,000 x 16 KiB: 1.31x the engine's wall time with 500 per batch, 1.06-1.13x with 2,000).
DEFAULT_BATCH_ASSETS = 2000
DEFAULT_BATCH_BYTES = "4GiB"
DEFAULT_ATTEMPTS = 5
DEFAULT_INITIAL_BACKOFF = "1s"
DEFAULT_MAX_BACKOFF = "60s"
MIN_CHUNK_SIZE = 64 * 1024
CHUNKS_IN_BUDGET = 4
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
                {
                    "type": "string",
                    "pattern": r"^\s*\d+(\.\d+)?\s*([bB]|[kKmMgGtT][iI]?[bB])?\s*$",
                },
            ],
            "description": "Bytes, or a size with a unit: 512MiB, 8MiB, 1GB "
            "(units B, kB, MB, GB, TB, KiB, MiB, GiB, TiB).",
        }
    ),
]


def _name(value: Any) -> Any:
    if isinstance(value, str) and not re.match(NAME_PATTERN, value):
        raise ValueError(
            f"a name has letters, digits, '_', '.' and '-', and starts with a letter or digit; "
            f"got {value!r}"
        )
    return value


Name = Annotated[str, Field(pattern=NAME_PATTERN), BeforeValidator(_name)]
"""Names of sources, targets and alternate keys: they become file names and artifact keys."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _every_fact() -> list[Literal["size", "etag", "last_modified"]]:
    return ["size", "etag", "last_modified"]


class Source(_Strict):
    """Where the locked bytes live: the package lock's own locations, or another lock."""

    prefix: str | None = Field(
        default=None,
        min_length=1,
        description="Package-lock rows whose href starts with this prefix "
        "(https://host/, s3://bucket/, or a folder). Default: every row of a remote store, and "
        "the files inside the package's (or the Items') folder.",
    )
    lock: SpecPath | None = Field(
        default=None,
        description="Another asset lock describing the same assets elsewhere "
        "(e.g. the S3-shaped lock). Relative to the spec file.",
    )
    plan: PlannedLock | None = Field(
        default=None,
        description="Or: the same bytes are already at another store, laid out as a layout "
        "places them; the lock is planned as `stacpkg asset-lock relocate --dry-run` plans it "
        "(sizes kept, no byte moved).",
    )
    alternate: AlternateName | None = Field(
        default=None,
        description="With lock or plan: add these locations to the Items as asset.alternate "
        "(as `stacpkg items enrich --alternate-key`), without copying anything.",
    )
    store: Access = Field(default_factory=Access, description="How to reach this source's store.")
    compare: list[Literal["size", "etag", "last_modified"]] = Field(
        default_factory=_every_fact,
        description="Lock facts this store reproduces and that drift checks and validation "
        "compare (a mirror that keeps sizes but not ETags: [size]).",
    )

    @field_validator("prefix")
    @classmethod
    def _no_secret_in_prefix(cls, value: str | None) -> str | None:
        problem = url_problem(value) if value else None
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        kinds = [kind for kind in ("prefix", "lock", "plan") if getattr(self, kind) is not None]
        if len(kinds) > 1:
            raise SpecFieldError(
                (kinds[1],),
                f"give one of prefix, lock and plan, not {kinds[0]} and {kinds[1]} together",
            )
        if self.alternate is not None and self.lock is None and self.plan is None:
            raise SpecFieldError(
                ("alternate",),
                "only a source with a lock or a plan adds an alternate: the rows a prefix "
                "stands for are the Items' own hrefs",
            )
        if (
            self.prefix is not None
            and urlsplit(self.prefix).scheme == "http"
            and not self.store.endpoint
            and not self.store.allow_http
        ):
            raise SpecFieldError(
                ("prefix",), "plain http:// needs allow_http: true in this source's store"
            )
        return self


class AlternateName(_Strict):
    """How a target appears in each asset's `alternate` map (alternate-assets extension)."""

    key: Name | None = Field(default=None, description="Key in asset.alternate (default: target).")
    name: str | None = Field(
        default=None,
        min_length=1,
        description="The alternate's `alternate:name` (default: none, as stacpkg's items "
        "enrich writes it).",
    )


Layout = Annotated[
    str,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "enum": list(LAYOUTS)},
                {
                    "type": "string",
                    "pattern": r"^(?=.*\{)([^{}]|\{("
                    + "|".join(sorted(TEMPLATE_FIELDS))
                    + r")\})*$",
                },
            ]
        }
    ),
]
"""A named layout or a key template; the editor's schema knows the template's field names."""


class PlannedLock(_Strict):
    """Where another store already holds the assets, as stacpkg's relocate --dry-run plans it."""

    store: TargetStore = Field(
        description="The store that holds the copies, as a target's: {type: s3, bucket: ..., "
        "prefix: ..., endpoint: ...} or {type: file, root: ...}. Only its location is used "
        "(written into the lock); the source's own store settings say how to reach it."
    )
    layout: Layout = Field(
        default="item-asset",
        description="Where each asset is in that store, as for a target (source-key: at the "
        "same key as in the package lock).",
    )
    from_: Name | None = Field(
        default=None,
        alias="from",
        description="The source whose rows are planned (default: the first source with "
        "neither lock nor plan).",
    )

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, validate_default=True
    )

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, value: str) -> str:
        return Target._known_layout(value)  # noqa: SLF001 - one rule for both kinds of layout


class OutputsStore(_Strict):
    """Outputs in a bucket, so that shard workers on different hosts share them."""

    store: TargetStore = Field(
        description="The bucket and key prefix for the outputs, with the same settings and "
        "credentials as a target's store: {type: s3, bucket, prefix, endpoint, credentials}."
    )

    @field_validator("store")
    @classmethod
    def _object_store(cls, value: TargetStore) -> TargetStore:
        if backend(value.type).capabilities.file_system:
            raise ValueError("a folder is written as a path: outputs: out/")
        return value


class Target(_Strict):
    """Storage the team controls, that receives a copy of every relocated asset."""

    store: TargetStore = Field(
        description="Where the copies go: {type: file, root: ...} or {type: s3, bucket: ...}."
    )
    alternate: AlternateName = Field(
        default_factory=AlternateName,
        description="The key and name under which this target appears in asset.alternate.",
    )
    layout: Layout = Field(
        default="item-asset",
        description="item-asset: <root>/<item_id>/<asset_key><ext> (as stacpkg); source-key: "
        "the source's key; or a template using {collection}, {item_id}, {asset_key}, {ext}, "
        "{source_key}, {source_dir}, {source_name}.",
    )
    adopt: SpecPath | None = Field(
        default=None,
        description="A relocated lock of copies another tool already made in this store "
        "(stacpkg's relocate): a copy at the key this target plans whose size and ETag are "
        "still its row's (and whose bytes hash to the asset's checksum, where one is known) "
        "is kept, not copied again. Relative to the spec file.",
    )
    promote: bool = Field(
        default=False,
        description="Also write <target>.primary.items.parquet, as stacpkg's "
        "promote-alternate --mode switch: this target's href becomes each asset's href, and "
        "the original href takes its place under the target's alternate key, named 'original'.",
    )

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, value: str) -> str:
        """Everything a template can get wrong on its own; collisions need the lock (compile)."""
        if value in LAYOUTS:
            return value
        if "{" not in value:
            raise ValueError(
                f"expected 'item-asset', 'source-key' or a template with {{item_id}}-style "
                f"fields, got {value!r}"
            )
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"layout template {value!r} is malformed: {exc}") from exc
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if name not in TEMPLATE_FIELDS:
                raise ValueError(
                    f"unknown layout field {{{name}}} in {value!r}; "
                    f"use {', '.join(f'{{{f}}}' for f in sorted(TEMPLATE_FIELDS))}"
                )
            if spec or conversion:
                raise ValueError(f"layout field {{{name}}} takes no '!' conversion or ':' format")
        if value.startswith("/") or any(part in {".", ".."} for part in value.split("/")):
            raise ValueError(
                f"layout template {value!r} must make keys under the target root "
                "(no leading '/', no '.' or '..' segments)"
            )
        return value


class AssetKeys(_Strict):
    """Asset keys to keep or drop (fnmatch globs: `visual`, `thumb*`)."""

    include: list[str] = Field(
        default_factory=list, description="Asset keys (globs) to keep (default: all)."
    )
    exclude: list[str] = Field(default_factory=list, description="Asset keys (globs) to drop.")


class Select(_Strict):
    """Which Items and assets this workflow touches (default: all that are locked)."""

    items: list[str] = Field(default_factory=list, description="Item ids (globs) to keep.")
    collections: list[str] = Field(default_factory=list, description="Collection ids to keep.")
    assets: AssetKeys = Field(default_factory=AssetKeys, description="Asset keys to keep or drop.")
    metadata_assets: bool = Field(
        default=False,
        description="When deriving a lock from Items, also lock assets keyed 'metadata' "
        "(stacpkg skips them unless asked).",
    )


class Retry(_Strict):
    """Retries on transient failures (connection errors, timeouts, 429, 5xx): the one policy of
    every request a run makes (copy, derive, survey, validation); the clients never retry."""

    attempts: int = Field(
        default=DEFAULT_ATTEMPTS,
        ge=1,
        le=50,
        description="Tries per asset copy, derive HEAD, target look and validated row, the first "
        "included: a failing object is requested this many times, no more.",
    )
    initial_backoff: Duration = Field(  # type: ignore[assignment]  # text parsed by validate_default
        default=DEFAULT_INITIAL_BACKOFF,
        description="Wait before the 2nd try; doubles per try up to max_backoff "
        "(a duration: 500ms, 1s, 2min, or seconds).",
    )
    max_backoff: Duration = Field(  # type: ignore[assignment]  # text parsed by validate_default
        default=DEFAULT_MAX_BACKOFF, description="Longest wait between tries (a duration)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Retry:
        if self.max_backoff < self.initial_backoff:
            raise SpecFieldError(
                ("max_backoff",),
                f"max_backoff ({self.max_backoff.total_seconds():g}s) cannot be shorter than "
                f"initial_backoff ({self.initial_backoff.total_seconds():g}s)",
            )
        return self


class Batch(_Strict):
    """How assets are grouped into Prefect task runs (one task run per batch, never per asset)."""

    assets: int = Field(
        default=DEFAULT_BATCH_ASSETS, ge=1, le=100_000, description="Most assets per batch."
    )
    bytes: Size = Field(  # type: ignore[assignment]  # text parsed by validate_default
        default=DEFAULT_BATCH_BYTES,
        description="Most bytes per batch (a size: 4GiB, 500MB, or bytes).",
    )


class Relocate(_Strict):
    """How the bytes move."""

    source: Name | None = Field(
        default=None, description="The source to copy from (default: the first source)."
    )
    max_workers: int = Field(
        default=DEFAULT_MAX_WORKERS,
        ge=1,
        le=256,
        description="Assets copied at once, at most; also the rows derived, targets surveyed "
        "and rows validated at once.",
    )
    memory_limit: Size = Field(  # type: ignore[assignment]  # text parsed by validate_default
        default=DEFAULT_MEMORY_LIMIT,
        description="Budget for buffers in flight; concurrency shrinks to stay within it. "
        "A size (512MiB, 2GB, or bytes), at least 4 chunks.",
    )
    chunk_size: Size = Field(  # type: ignore[assignment]  # text parsed by validate_default
        default=DEFAULT_CHUNK_SIZE,
        description="Multipart part size and unit of the memory budget (a size: 8MiB, or "
        "bytes); at least 64KiB. S3 parts are at least 5MiB whatever this says; reads are at "
        "most 1MiB.",
    )
    batch: Batch = Field(default_factory=Batch, description="Assets per Prefect task run.")
    retry: Retry = Field(
        default_factory=Retry,
        description="Retries on transient failures, for copy, derive, survey and validation.",
    )
    on_drift: Literal["refuse", "copy"] = Field(
        default="refuse",
        description="When a source's size, ETag or Last-Modified differs from its lock: refuse "
        "the copy (outcome drifted) or copy and record the new facts.",
    )
    fail_fast: bool = Field(default=False, description="Stop at the first failed asset.")
    verify: Literal["facts", "checksums"] = Field(
        default="facts",
        description="How a rerun proves a copy it finds: facts (its size, ETag and "
        "Last-Modified unchanged since it was recorded, and no validation found it wrong) or "
        "checksums (its bytes hashed again before it is trusted; copies without a checksum "
        "are copied again).",
    )

    @model_validator(mode="after")
    def _budget(self) -> Relocate:
        if self.chunk_size < MIN_CHUNK_SIZE:
            raise SpecFieldError(
                ("chunk_size",), f"must be at least 64KiB, got {format_size(self.chunk_size)}"
            )
        if self.memory_limit < CHUNKS_IN_BUDGET * self.chunk_size:
            raise SpecFieldError(
                ("memory_limit",),
                f"must hold at least {CHUNKS_IN_BUDGET} chunks of chunk_size "
                f"({format_size(CHUNKS_IN_BUDGET * self.chunk_size)}), "
                f"got {format_size(self.memory_limit)}",
            )
        return self


class Validate(_Strict):
    """Dual validation: the remote locks and the relocated ones, after every run.

    Written as a list of names (`[https, s3, local]`) or as `{locks: [...], checksums: ...}`.
    """

    locks: list[Name] = Field(description="Sources and targets whose locks are validated.")
    checksums: bool | list[Name] = Field(
        default=False,
        description="Also read the bytes and compare SHA-256 with the lock's file_checksum: "
        "true for every lock, or a list of names from locks.",
    )

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"locks": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _names(self) -> Validate:
        for index, name in enumerate(self.locks):
            if name in self.locks[:index]:
                raise SpecFieldError(("locks", index), f"{name!r} is listed twice")
        if isinstance(self.checksums, list):
            for index, name in enumerate(self.checksums):
                if name not in self.locks:
                    raise SpecFieldError(
                        ("checksums", index),
                        f"{name!r} is not in validate.locks ({', '.join(self.locks)})",
                    )
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """Editors must accept the short form too: a plain list of names."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        names = schema["properties"]["locks"]
        short = {"type": "array", "items": names["items"], "description": names["description"]}
        return {"description": schema.pop("description"), "anyOf": [short, dict(schema)]}

    def with_checksums(self, name: str) -> bool:
        return self.checksums is True or (
            isinstance(self.checksums, list) and name in self.checksums
        )


class Spec(_Strict):
    """A package spec: sources, targets, alternate keys, and what to validate."""

    name: str = Field(min_length=1, description="Names the run's artifacts and deployments.")
    package: SpecPath | None = Field(
        default=None,
        description="A stacpkg package folder (items.parquet + assets.lock.parquet). "
        "Exactly one of package and stac.",
    )
    stac: SpecPath | None = Field(
        default=None,
        description="STAC Items without a lock (JSON Item or ItemCollection, NDJSON, "
        "stac-geoparquet): the lock is derived first and the package written to outputs.",
    )
    items: SpecPath | None = Field(
        default=None, description="The STAC view to enrich (default: the package's items)."
    )
    select: Select = Field(default_factory=Select, description="Which Items and assets to touch.")
    sources: dict[Name, Source] = Field(
        min_length=1,
        description="Where the locked bytes live, by name; relocation reads the first one "
        "unless relocate.source says otherwise.",
    )
    targets: dict[Name, Target] = Field(
        default_factory=dict,
        description="Storage that receives a copy of every asset, by name (none: validate only).",
    )
    relocate: Relocate = Field(
        default_factory=Relocate,
        description="How the bytes move: concurrency, memory, batches, retries, drift.",
    )
    validate_: Validate | None = Field(
        default=None,
        alias="validate",
        description="Locks validated after every run: [names] or {locks: [...], checksums: ...}.",
    )
    outputs: SpecPath | OutputsStore = Field(
        description="Where the relocated locks, items, validation, report and run state go: a "
        "folder relative to the spec file, or {store: {type: s3, ...}} for a bucket that shard "
        "workers on other hosts share."
    )

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, validate_default=True
    )

    @model_validator(mode="after")
    def _check_references(self) -> Spec:
        if self.package is not None and self.stac is not None:
            raise SpecFieldError(("stac",), "give either package or stac, not both")
        if self.package is None and self.stac is None:
            raise SpecFieldError(
                ("package",),
                "required key missing: give package (a stacpkg package folder) or stac "
                "(STAC Items to lock first)",
            )
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
        for name in [*self.lock_alternates, *self.targets]:
            key = self.alternate_key(name)
            if key in keys:
                kind = "targets" if name in self.targets else "sources"
                raise SpecFieldError(
                    (kind, name, "alternate", "key"),
                    f"alternate key {key!r} is already used by {keys[key]}",
                )
            keys[key] = f"{'target' if name in self.targets else 'source'} {name!r}"
        self._check_plans()
        self._check_buckets()
        return self

    def _check_plans(self) -> None:
        """A planned lock maps the rows of a source that stands for the package lock's own."""
        plain = [n for n, s in self.sources.items() if s.lock is None and s.plan is None]
        for name, source in self.sources.items():
            if source.plan is None:
                continue
            wanted = source.plan.from_
            if wanted is None and not plain:
                raise SpecFieldError(
                    ("sources", name, "plan"),
                    "a planned lock maps the rows of a source with neither lock nor plan; "
                    "the spec has none",
                )
            if wanted is not None and wanted not in plain:
                raise SpecFieldError(
                    ("sources", name, "plan", "from"),
                    f"expected a source with neither lock nor plan ({', '.join(plain) or 'none'}),"
                    f" got {wanted!r}",
                )

    def _check_buckets(self) -> None:
        """Two targets writing under one key prefix would overwrite each other's copies."""
        seen: dict[tuple[str, str | None, str | None], list[tuple[str, str]]] = {}
        for name, target in self.targets.items():
            if backend(target.store.type).capabilities.file_system:
                continue  # folders: `_check_paths`, which knows the spec file's folder
            store = target.store.ref(Path())  # a bucket does not depend on the spec's folder
            place = seen.setdefault((store.kind, store.access.endpoint, store.container), [])
            for other, prefix in place:
                if _nested(prefix, store.root):
                    raise SpecFieldError(
                        ("targets", name, "store", "prefix"),
                        f"bucket {store.container} prefix {store.root!r} overlaps target "
                        f"{other!r} (prefix {prefix!r})",
                    )
            place.append((name, store.root))

    @model_validator(mode="after")
    def _check_paths(self, info: ValidationInfo) -> Spec:
        """Inputs exist; nothing a run writes can land on, in, or around what it reads."""
        base = (info.context or {}).get("base_dir")
        if base is None:
            return self
        base = Path(base)
        found = [
            _input(base, self.package, ("package",), package=True),
            _input(base, self.stac, ("stac",)),
            _input(base, self.items, ("items",)),
            *(_input(base, s.lock, ("sources", n, "lock")) for n, s in self.sources.items()),
            *(_input(base, t.adopt, ("targets", n, "adopt")) for n, t in self.targets.items()),
            *(_folder_of(base, s.prefix) for s in self.sources.values() if s.prefix),
            *(
                _folder_of(base, s.store.endpoint)
                for s in self.sources.values()
                if s.store.endpoint
            ),
            *(
                Path(s.plan.store.ref(base).root)
                for s in self.sources.values()
                if s.plan is not None and backend(s.plan.store.type).capabilities.file_system
            ),
        ]
        inputs = [path.resolve() for path in found if path is not None]
        if isinstance(self.outputs, OutputsStore):
            outputs = None
        else:
            package = (base / self.package).resolve() if self.package else None
            outputs = _check_outputs((base / self.outputs).resolve(), package, inputs)
        roots: dict[Path, str] = {}
        for name, target in self.targets.items():
            if backend(target.store.type).capabilities.file_system:
                root = Path(target.store.ref(base).root)
                loc = ("targets", name, "store", "root")
                _check_root(loc, root, inputs=inputs, outputs=outputs, roots=roots)
                roots[root] = name
        return self

    def alternate_key(self, name: str) -> str:
        """The key in asset.alternate of a target (or a source's alternate): alternate.key,
        else the target's (or source's) name."""
        return self._alternate(name).key or name

    def alternate_name(self, name: str) -> str | None:
        """The alternate's `alternate:name`, only where the spec gives one: stacpkg's `items
        enrich` writes none, and the Items must read the same as its."""
        return self._alternate(name).name

    def _alternate(self, name: str) -> AlternateName:
        if name in self.targets:
            return self.targets[name].alternate
        return self.sources[name].alternate or AlternateName()

    def planned_from(self, name: str) -> str:
        """The source whose rows a planned source's lock maps: plan.from, else the first
        source with neither lock nor plan (the spec's checks make sure there is one)."""
        plan = self.sources[name].plan
        assert plan is not None
        return plan.from_ or next(
            n for n, s in self.sources.items() if s.lock is None and s.plan is None
        )

    @property
    def lock_alternates(self) -> list[str]:
        """Sources whose lock (read or planned) the Items gain as an alternate."""
        return [name for name, source in self.sources.items() if source.alternate is not None]

    @property
    def relocate_source(self) -> str:
        """The source relocation reads: relocate.source, else the first source."""
        return self.relocate.source or next(iter(self.sources))

    @property
    def slug(self) -> str:
        """The spec name as Prefect artifact keys need it: lowercase letters, digits, dashes
        (a name taken from the environment as its variable's name)."""
        return re.sub(r"[^a-z0-9]+", "-", scrub(self.name).lower()).strip("-") or "spec"


def _input(base: Path, path: Path | None, loc: Loc, *, package: bool = False) -> Path | None:
    """The input at `path` (relative to the spec), refused unless it is there and of its kind."""
    if path is None:
        return None
    full = (base / path).resolve()
    if not full.exists():
        raise SpecFieldError(loc, f"{full} does not exist")
    if package:
        if not full.is_dir():
            raise SpecFieldError(loc, f"{full} is a file; a stacpkg package is a folder")
        missing = [n for n in ("items.parquet", "assets.lock.parquet") if not (full / n).is_file()]
        if missing:
            raise SpecFieldError(
                loc, f"{full} is not a stacpkg package (missing {', '.join(missing)})"
            )
    elif not full.is_file():
        raise SpecFieldError(loc, f"{full} is a folder; expected a file")
    return full


def _check_outputs(outputs: Path, package: Path | None, inputs: list[Path]) -> Path:
    if outputs.exists() and not outputs.is_dir():
        raise SpecFieldError(("outputs",), f"{outputs} is a file, not a folder")
    if package and (outputs == package or package in outputs.parents):
        raise SpecFieldError(
            ("outputs",), f"cannot be the package folder {package} or lie inside it"
        )
    if outputs in inputs:
        raise SpecFieldError(("outputs",), f"{outputs} is a file this spec reads")
    return outputs


def _check_root(
    loc: Loc, root: Path, *, inputs: list[Path], outputs: Path | None, roots: dict[Path, str]
) -> None:
    """A target root receives writes: it must not hit the outputs, an input or another root."""
    if root.exists() and not root.is_dir():
        raise SpecFieldError(loc, f"{root} is a file, not a folder")
    if outputs is None:
        pass
    elif root == outputs:
        raise SpecFieldError(loc, "a target root cannot be the outputs folder itself")
    elif root in outputs.parents:
        raise SpecFieldError(
            loc, f"the outputs folder {outputs} lies inside this target root; keep them apart"
        )
    for path in inputs:
        if _overlap(root, path):
            raise SpecFieldError(loc, f"the target root {root} overlaps the input {path}")
    for other, name in roots.items():
        if _overlap(root, other):
            raise SpecFieldError(
                loc, f"the target root {root} overlaps the root of target {name!r}"
            )


def _folder_of(base: Path, location: str) -> Path | None:
    """The local folder a source prefix or mirror endpoint names, if it names one."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return base / unquote(parts.path)
    if parts.scheme:
        return None
    return base / location


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _nested(a: str, b: str) -> bool:
    """Two key prefixes (no leading or trailing '/') of which one holds the other."""
    return not a or not b or a == b or a.startswith(b + "/") or b.startswith(a + "/")
