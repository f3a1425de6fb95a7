"""How to reach a store: the typed settings a spec gives, resolved to credentials only at run time.

These models live in `tasks/` because the stores are built here; `flows/spec.py` composes them.
A secret never sits in these objects: they hold the *names* of environment variables or of a
Prefect Secret block, and `resolve_credentials` reads the values inside the task that needs them.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from tasks.errors import InputError

DEFAULT_TIMEOUT = timedelta(minutes=30)
DEFAULT_CONNECT_TIMEOUT = timedelta(seconds=10)
DEFAULT_READ_TIMEOUT = timedelta(seconds=60)

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _refuse_literal_secret(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            "a literal secret is not allowed in a spec: write {env: VARIABLE_NAME} "
            "or use credentials.prefect_secret"
        )
    return value


class EnvRef(BaseModel):
    """The name of an environment variable that holds a secret at run time."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    env: str = Field(pattern=_ENV_NAME, description="Environment variable to read at run time.")


SecretRef = Annotated[EnvRef, BeforeValidator(_refuse_literal_secret)]


class Credentials(BaseModel):
    """Where keys come from: named environment variables, or a Prefect Secret block.

    Without credentials, a store uses the standard AWS environment (AWS_ACCESS_KEY_ID, ...).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    access_key_id: SecretRef | None = Field(
        default=None, description="{env: VAR} naming the access key id's variable."
    )
    secret_access_key: SecretRef | None = Field(
        default=None, description="{env: VAR} naming the secret access key's variable."
    )
    session_token: SecretRef | None = Field(
        default=None, description="{env: VAR} naming the session token's variable."
    )
    prefect_secret: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding JSON "
        '{"access_key_id": ..., "secret_access_key": ..., "session_token": ...}.',
    )

    @field_validator("prefect_secret")
    @classmethod
    def _block_name(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("-", "").isalnum():
            raise ValueError("a Prefect block name has lowercase letters, digits and dashes")
        return value


def _duration(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().lower()
        for suffix, unit in (("ms", 0.001), ("s", 1), ("min", 60), ("m", 60), ("h", 3600)):
            if text.endswith(suffix) and text[: -len(suffix)].strip().replace(".", "", 1).isdigit():
                return timedelta(seconds=float(text[: -len(suffix)]) * unit)
        raise ValueError(f"expected a duration like 30s, 5min or 2h, got {value!r}")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Access(BaseModel):
    """Connection settings for a source or target store; each applies where it makes sense."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    endpoint: str | None = Field(
        default=None,
        description="S3-compatible endpoint (overrides a lock's store_endpoint_url), or for "
        "http(s) sources a mirror that serves the same keys.",
    )
    region: str | None = Field(default=None, description="S3 region, e.g. us-east-1.")
    anonymous: bool = Field(default=False, description="Unsigned requests (public buckets).")
    requester_pays: bool = Field(default=False, description="Send x-amz-request-payer.")
    allow_http: bool = Field(
        default=False,
        description="Permit plain http:// URLs and endpoints (refused unless set, so that no "
        "credential or byte crosses the network unencrypted by accident).",
    )
    credentials: Credentials | None = Field(
        default=None, description="Keys from named environment variables or a Prefect Secret."
    )
    timeout: Duration = Field(
        default=DEFAULT_TIMEOUT, description="Limit for one whole request, body included."
    )
    connect_timeout: Duration = Field(default=DEFAULT_CONNECT_TIMEOUT)
    read_timeout: Duration = Field(
        default=DEFAULT_READ_TIMEOUT,
        description="A response that sends nothing for this long is treated as stalled.",
    )


class ResolvedKeys(BaseModel):
    """Secret values, alive only inside the task that builds a store; never logged or returned."""

    model_config = ConfigDict(frozen=True)
    access_key_id: str | None = Field(default=None, repr=False)
    secret_access_key: str | None = Field(default=None, repr=False)
    session_token: str | None = Field(default=None, repr=False)


def resolve_credentials(credentials: Credentials | None) -> ResolvedKeys | None:
    """Read the secrets a spec names; an unset variable or block is an error naming it."""
    if credentials is None:
        return None
    if credentials.prefect_secret:
        return _from_prefect_secret(credentials.prefect_secret)
    values: dict[str, str | None] = {}
    for field in ("access_key_id", "secret_access_key", "session_token"):
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
        raw = Secret.load(name).get()
    except ValueError as exc:
        raise InputError(f"credentials.prefect_secret: no Secret block named {name!r}") from exc
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, dict) or "secret_access_key" not in data:
        raise InputError(
            f"credentials.prefect_secret: Secret block {name!r} must hold a JSON object with "
            "access_key_id and secret_access_key"
        )
    return ResolvedKeys(
        access_key_id=data.get("access_key_id"),
        secret_access_key=data.get("secret_access_key"),
        session_token=data.get("session_token"),
    )


StoreKind = Literal["file", "s3", "gs", "az", "http", "https"]
