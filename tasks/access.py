"""How to reach a store: the typed settings a spec gives, resolved to credentials only at run time.

These models live in `tasks/` because the stores are built here; `flows/spec.py` composes them,
and shares their value types (durations, paths relative to the spec file).
A secret never sits in these objects: they hold the *names* of environment variables or of a
Prefect Secret block, and `resolve_credentials` reads the values inside the task that needs them.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from stacflow.tasks.errors import InputError

DEFAULT_TIMEOUT = "30min"
DEFAULT_CONNECT_TIMEOUT = "10s"
DEFAULT_READ_TIMEOUT = "60s"

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_BLOCK_NAME = r"^[a-z0-9][a-z0-9-]*$"
_AWS_KEY_ID = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$")
_USE_REFERENCES = (
    "a literal secret is not allowed in a spec (specs are checked in and logged): "
    "write {env: VARIABLE_NAME}, or name a Prefect Secret block in credentials.prefect_secret"
)


def _refuse_literal_secret(value: Any) -> Any:
    """Anything but a mapping here is the secret itself (or a typo of one): never echo it."""
    if isinstance(value, dict | EnvRef):
        return value
    raise ValueError(_USE_REFERENCES)


class EnvRef(BaseModel):
    """The name of an environment variable that holds a secret at run time."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    env: str = Field(pattern=_ENV_NAME, description="Environment variable to read at run time.")

    @field_validator("env", mode="before")
    @classmethod
    def _a_name(cls, value: Any) -> Any:
        """A name matches `_ENV_NAME`, and so does an AWS access key id: refuse the latter."""
        if isinstance(value, str) and _AWS_KEY_ID.match(value):
            raise ValueError(
                "this looks like an AWS access key id, not the name of an environment variable; "
                + _USE_REFERENCES
            )
        if not isinstance(value, str) or not re.match(_ENV_NAME, value):
            raise ValueError(
                "expected the name of an environment variable (letters, digits and _, "
                "not starting with a digit)"
            )
        return value


SecretRef = Annotated[EnvRef, BeforeValidator(_refuse_literal_secret)]


KEY_SETS: dict[str, tuple[frozenset[str], ...]] = {
    "an S3 store": (
        frozenset({"access_key_id", "secret_access_key"}),
        frozenset({"access_key_id", "secret_access_key", "session_token"}),
    ),
    "an Azure container": (frozenset({"account_key"}), frozenset({"sas_token"})),
    "a GCS bucket": (frozenset({"bearer_token"}), frozenset({"service_account_key"})),
}
"""The keys each kind of store signs with: S3's key pair (and session token), an Azure account
key or SAS token, a GCS OAuth token or service-account key (JSON). One spec may name any set."""
SECRET_FIELDS = tuple(sorted({name for sets in KEY_SETS.values() for s in sets for name in s}))


class Credentials(BaseModel):
    """Where keys come from: named environment variables, or a Prefect Secret block.

    Without credentials, a store uses its standard environment (AWS_ACCESS_KEY_ID, ...; Google
    application default credentials; AZURE_STORAGE_* variables).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    access_key_id: SecretRef | None = Field(
        default=None, description="S3: {env: VAR} naming the access key id's variable."
    )
    secret_access_key: SecretRef | None = Field(
        default=None, description="S3: {env: VAR} naming the secret access key's variable."
    )
    session_token: SecretRef | None = Field(
        default=None,
        description="S3: {env: VAR} naming the session token's variable (temporary credentials).",
    )
    account_key: SecretRef | None = Field(
        default=None, description="Azure: {env: VAR} naming the storage account key's variable."
    )
    sas_token: SecretRef | None = Field(
        default=None, description="Azure: {env: VAR} naming a SAS token's variable."
    )
    bearer_token: SecretRef | None = Field(
        default=None, description="GCS: {env: VAR} naming an OAuth bearer token's variable."
    )
    service_account_key: SecretRef | None = Field(
        default=None,
        description="GCS: {env: VAR} naming the variable that holds a service-account key (JSON).",
    )
    prefect_secret: str | None = Field(
        default=None,
        pattern=_BLOCK_NAME,
        description="Name of a Prefect Secret block holding a JSON object with the same keys, "
        'e.g. {"access_key_id": ..., "secret_access_key": ..., "session_token": ...}.',
    )

    @field_validator("prefect_secret", mode="before")
    @classmethod
    def _block_name(cls, value: Any) -> Any:
        """A block name is short and plain; anything else is likely the secret: never echo it."""
        if value is not None and not (isinstance(value, str) and re.match(_BLOCK_NAME, value)):
            raise ValueError(
                "expected the name of a Prefect Secret block (lowercase letters, digits and "
                "dashes); " + _USE_REFERENCES
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Credentials:
        named = self.named()
        if self.prefect_secret and named:
            raise ValueError("give either prefect_secret or {env: VAR} keys, not both")
        if self.prefect_secret:
            return self
        if named & {"access_key_id", "secret_access_key"} and not _complete(
            named, KEY_SETS["an S3 store"]
        ):
            raise ValueError(
                "name both access_key_id and secret_access_key as {env: VAR} (and "
                "session_token, if the keys are temporary), or a prefect_secret"
            )
        if not any(_complete(named, sets) for sets in KEY_SETS.values()):
            raise ValueError(
                "name one set of keys as {env: VAR}: access_key_id and secret_access_key (S3), "
                "account_key or sas_token (Azure), bearer_token or service_account_key (GCS); "
                "or a prefect_secret (leave credentials out to use the store's standard "
                "environment)"
            )
        return self

    def named(self) -> frozenset[str]:
        """The keys named as {env: VAR}."""
        return frozenset(f for f in SECRET_FIELDS if getattr(self, f) is not None)


def _complete(named: frozenset[str], sets: tuple[frozenset[str], ...]) -> bool:
    """Whether `named` is exactly one of a store's key sets."""
    return named in sets


def credentials_for(credentials: Credentials | None, a_store: str) -> Credentials | None:
    """Refuse keys another kind of store signs with, in the spec, where the field is named."""
    if credentials is None or credentials.prefect_secret:
        return credentials
    if not _complete(credentials.named(), KEY_SETS[a_store]):
        wanted = " or ".join(dict.fromkeys(" and ".join(sorted(s)) for s in KEY_SETS[a_store]))
        raise ValueError(
            f"{a_store} signs with {wanted}; got {', '.join(sorted(credentials.named()))}"
        )
    return credentials


def _duration(value: Any) -> Any:
    """`30s`, `5min`, `2h`, `250ms`, or a number of seconds (also as a string, from `${VAR}`)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return timedelta(seconds=value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match[1]) * _DURATION_UNITS[match[2].lower()])
    shown = repr(value) if isinstance(value, str) else json.dumps(value, default=str)[:40]
    raise ValueError(f"expected a duration like 30s, 5min or 2h, got {shown}")


_DURATION_UNITS = {"": 1, "ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|)\s*$", re.IGNORECASE)

Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {
                    "type": "string",
                    "pattern": r"^\s*\d+(\.\d+)?\s*([mM][sS]|[sS]|[mM][iI][nN]|[mM]|[hH])?\s*$",
                },
            ],
            "description": "Seconds, or a duration with a unit: 250ms, 30s, 5min (or 5m), 2h.",
        }
    ),
]


def _spec_path(value: Any) -> Any:
    """An empty path would silently mean the spec's own folder; `~` means the user's home."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("expected a path, got an empty string")
        return Path(value).expanduser()
    return value


SpecPath = Annotated[
    Path,
    BeforeValidator(_spec_path),
    WithJsonSchema({"type": "string", "minLength": 1}),
]
"""A path as written in a spec: relative paths are relative to the spec file's folder."""


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class Access(BaseModel):
    """Connection settings for a source or target store; each applies where it makes sense.

    `allow_http` and `anonymous` come before the fields they constrain: a field validator sees
    only the fields declared above it, and a field-level error names the field it is about.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    allow_http: bool = Field(
        default=False,
        description="Permit plain http:// URLs and endpoints (refused unless set, so that no "
        "credential or byte crosses the network unencrypted by accident).",
    )
    endpoint: str | None = Field(
        default=None,
        description="S3-compatible endpoint (overrides a lock's store_endpoint_url), or for "
        "an http(s) source a mirror that serves the same keys: an http(s):// URL, or a folder "
        "(relative to the spec file, or file://). No user, password or query string in it; "
        "plain http:// needs allow_http: true.",
    )
    region: str | None = Field(default=None, description="S3 region, e.g. us-east-1.")
    account: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]{3,24}$",
        description="Azure storage account (3-24 lowercase letters and digits). Default: the "
        "one the endpoint names (https://ACCOUNT.blob.core.windows.net, or an emulator's "
        "http://HOST:PORT/ACCOUNT), else AZURE_STORAGE_ACCOUNT_NAME.",
    )
    anonymous: bool = Field(default=False, description="Unsigned requests (public buckets).")
    requester_pays: bool = Field(default=False, description="Send x-amz-request-payer.")
    credentials: Credentials | None = Field(
        default=None,
        description="Keys from named environment variables or a Prefect Secret; never the "
        "keys themselves. Default: the store's standard environment (AWS_ACCESS_KEY_ID, ...; "
        "Google application default credentials; AZURE_STORAGE_ACCOUNT_KEY, ...).",
    )
    timeout: PositiveDuration = Field(  # type: ignore[assignment]  # text parsed by validate_default
        default=DEFAULT_TIMEOUT,
        description="Limit for one whole request, body included (a duration: 30s, 5min, 2h, "
        "or seconds).",
    )
    connect_timeout: PositiveDuration = Field(  # type: ignore[assignment]  # text parsed by validate_default
        default=DEFAULT_CONNECT_TIMEOUT,
        description="Limit for opening a connection (a duration).",
    )
    read_timeout: PositiveDuration = Field(  # type: ignore[assignment]  # text parsed by validate_default
        default=DEFAULT_READ_TIMEOUT,
        description="A response that sends nothing for this long is treated as stalled "
        "(a duration).",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if not value.strip():
            raise ValueError("expected a URL or a folder, got an empty string")
        problem = url_problem(value)
        if problem:
            raise ValueError(problem)
        scheme = urlsplit(value).scheme
        if scheme not in {"", "file", "http", "https"}:
            raise ValueError(
                f"expected an http(s):// URL (or, for a mirror of an http(s) source, a folder), "
                f"got {value!r}"
            )
        if scheme == "http" and not info.data.get("allow_http"):
            raise ValueError("a plain http:// endpoint needs allow_http: true in the same store")
        return value

    @field_validator("credentials", mode="before")
    @classmethod
    def _credentials_mapping(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and not isinstance(value, dict | Credentials):
            raise ValueError(_USE_REFERENCES)
        if value is not None and info.data.get("anonymous"):
            raise ValueError("anonymous: true sends unsigned requests; drop one of the two")
        return value


def url_problem(url: str) -> str | None:
    """Why a URL written in a spec would leak a secret, or None.

    A user:password or a query string (signed URLs carry their signature there) is a credential
    in the spec's literal text; the problem never repeats the URL, so it never echoes the secret.
    """
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return (
            "a URL cannot carry a user name or password: name them under credentials, "
            "as {env: VARIABLE_NAME} or a prefect_secret"
        )
    if parts.query or parts.fragment or url.rstrip().endswith("?"):
        return "a URL cannot hold a query string (signed URLs carry secrets there)"
    return None


class ResolvedKeys(BaseModel):
    """Secret values, alive only inside the task that builds a store; never logged or returned."""

    model_config = ConfigDict(frozen=True)
    access_key_id: str | None = Field(default=None, repr=False)
    secret_access_key: str | None = Field(default=None, repr=False)
    session_token: str | None = Field(default=None, repr=False)
    account_key: str | None = Field(default=None, repr=False)
    sas_token: str | None = Field(default=None, repr=False)
    bearer_token: str | None = Field(default=None, repr=False)
    service_account_key: str | None = Field(default=None, repr=False)


def resolve_credentials(credentials: Credentials | None) -> ResolvedKeys | None:
    """Read the secrets a spec names; an unset variable or block is an error naming it."""
    if credentials is None:
        return None
    if credentials.prefect_secret:
        return _from_prefect_secret(credentials.prefect_secret)
    values: dict[str, str | None] = {}
    for field in SECRET_FIELDS:
        ref: EnvRef | None = getattr(credentials, field)
        if ref is None:
            values[field] = None
            continue
        value = os.environ.get(ref.env)
        if not value:
            raise InputError(f"credentials.{field}: environment variable {ref.env} is not set")
        values[field] = value
    return ResolvedKeys(**values)


def _from_prefect_secret(name: str) -> ResolvedKeys:
    from prefect.blocks.system import Secret  # noqa: PLC0415 - Prefect only where a block is named

    try:
        # Prefect's async_dispatch types it as maybe a coroutine; called from sync code, it is not.
        raw = Secret.load(name).get()  # type: ignore[union-attr]
    except ValueError as exc:
        raise InputError(f"credentials.prefect_secret: no Secret block named {name!r}") from exc
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, dict) or not any(
        _complete(frozenset(k for k in SECRET_FIELDS if data.get(k)), sets)
        for sets in KEY_SETS.values()
    ):
        raise InputError(
            f"credentials.prefect_secret: Secret block {name!r} must hold a JSON object with "
            "access_key_id and secret_access_key (S3), account_key or sas_token (Azure), or "
            "bearer_token or service_account_key (GCS)"
        )
    return ResolvedKeys(**{k: data.get(k) for k in SECRET_FIELDS})
