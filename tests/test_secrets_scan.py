"""No secret reaches an output: every secret form is planted, the runs go through, then every
output file, the terminal, the captured logs, the artifacts and the Prefect database are read.

The forms: keys from named environment variables, a Prefect Secret block, URL userinfo in a
lock, a signed URL's query in a lock, and `${VAR}` values in a spec (shown by name, never value).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from stacflow.flows.cli import main
from stacflow.tasks.locks import LockRow, read_lock, write_lock
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package
from tests.servers import s3

ENV_KEY_ID = "AKIASCANENVKEY000001"
ENV_SECRET = "scan-env-secret-7f3a9c1e"
BLOCK_SECRET = "scan-block-secret-5d2b8e47"
USERINFO = "scan-userinfo-pw-93ab"
SIGNATURE = "scansignature0c4d7e9a"
NAME_VALUE = "SEKRIT-scan-name-61f0"
WORKERS_VALUE = "SEKRIT-scan-workers-2b7c"
SECRETS = [ENV_KEY_ID, ENV_SECRET, BLOCK_SECRET, USERINFO, SIGNATURE, NAME_VALUE, WORKERS_VALUE]


def _spec(
    folder: Path, name: str, package: Path, origin_url: str, target: str, more: str = ""
) -> Path:
    spec = folder / f"{name}.yaml"
    spec.write_text(
        f"""name: ${{SCAN_NAME}}
package: {package}
sources:
  https: {{prefix: "{ORIGIN}/", store: {{endpoint: "{origin_url}/", allow_http: true}}}}
  signed: {{lock: {folder.parent / "inputs" / "signed.lock.parquet"}, store: {{allow_http: true}}}}
targets:
  local: {{store: {{type: file, root: {folder / "local"}}}}}
  bucket:
    store:
      {target}
validate: {{locks: [https, signed, local, bucket], checksums: true}}
outputs: {folder / "out"}
{more}"""
    )
    return spec


def test_no_secret_form_reaches_any_output(
    tmp_path, origin, moto_endpoint, s3_bucket, prefect_harness, monkeypatch, capsys, caplog
):
    from prefect.blocks.system import Secret  # noqa: PLC0415

    origin.last_modified = LAST_MODIFIED_HTTP
    monkeypatch.setenv("SCAN_KEY_ID", ENV_KEY_ID)
    monkeypatch.setenv("SCAN_SECRET", ENV_SECRET)
    monkeypatch.setenv("SCAN_NAME", NAME_VALUE)
    monkeypatch.setenv("SCAN_WORKERS", WORKERS_VALUE)
    Secret(
        value=json.dumps({"access_key_id": "block-key", "secret_access_key": BLOCK_SECRET})
    ).save("scan-keys", overwrite=True)
    inputs = tmp_path / "inputs"
    package = make_package(
        inputs / "pkg",
        origin.root,
        {("scene-1", "visual"): ("scenes/1/visual.tif", os.urandom(9000))},
    )
    signed = LockRow(
        "scene-1", "visual", "http",
        f"{origin.url}/scenes/1/visual.tif?X-Amz-Credential=AKIA%2Fx&X-Amz-Signature={SIGNATURE}",
        None, "", 9000,
    )  # fmt: skip
    write_lock(inputs / "signed.lock.parquet", [signed])
    bucket = (
        f"{{type: s3, bucket: {s3_bucket}, prefix: copies, endpoint: '{moto_endpoint}', "
        f"allow_http: true, region: {s3.REGION}, credentials: "
    )
    work = tmp_path / "work"
    work.mkdir()
    by_env = _spec(
        work,
        "env",
        package,
        origin.url,
        bucket + "{access_key_id: {env: SCAN_KEY_ID}, secret_access_key: {env: SCAN_SECRET}}}",
    )
    by_block = _spec(work, "block", package, origin.url, bucket + "{prefect_secret: scan-keys}}")

    assert main(["run", str(by_env)]) == 0  # env credentials, a signed URL, ${VAR} in the name
    assert main(["run", str(by_block)]) == 0  # the same target with keys from a Secret block
    assert main(["check", str(by_block), "--checksums"]) == 0
    assert main(["plan", str(by_env)]) == 0
    bad = _spec(work, "bad", package, origin.url, bucket + "{prefect_secret: scan-keys}}",
                "relocate: {max_workers: '${SCAN_WORKERS}'}\n")  # fmt: skip
    assert main(["plan", str(bad)]) == 2
    lock = package / "assets.lock.parquet"
    userinfo = LockRow(
        "scene-3",
        "visual",
        "https",
        f"https://scan:{USERINFO}@assets.example.test",
        None,
        "x.tif",
        3,
    )
    write_lock(lock, [*read_lock(lock), userinfo])
    assert main(["run", str(by_env)]) == 2

    terminal = capsys.readouterr()
    said = terminal.out + terminal.err + caplog.text
    assert "plan for ${SCAN_NAME}" in said
    assert "got '${SCAN_WORKERS}'" in said
    assert "https://<redacted>@assets.example.test/x.tif" in said
    found = _scan(said, "the terminal and the logs")
    found += _scan_files(work)
    found += _scan_prefect(prefect_harness)
    assert found == []


def _scan(text: str, where: str) -> list[str]:
    """Case-blind: an artifact key is a lower-cased spec name."""
    return [f"{secret} in {where}" for secret in SECRETS if secret.lower() in text.lower()]


def _scan_files(root: Path) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", errors="replace")
        if path.suffix == ".parquet":
            text += json.dumps(pq.read_table(path).to_pylist(), default=str)
        found += _scan(text, str(path))
    return found


def _scan_prefect(api_url: str) -> list[str]:
    from prefect import get_client  # noqa: PLC0415

    from tests.servers.prefect_harness import drain_workers  # noqa: PLC0415

    drain_workers()
    with get_client(sync_client=True) as client:
        logs = _all_logs(client)
        artifacts = client.read_artifacts()
        runs = client.read_flow_runs()
    found = _scan("\n".join(log.message for log in logs), f"Prefect logs of {api_url}")
    found += _scan(json.dumps([a.model_dump(mode="json") for a in artifacts]), "the artifacts")
    found += _scan(json.dumps([r.model_dump(mode="json") for r in runs]), "the flow runs")
    home = Path(os.environ["PREFECT_HOME"])
    for database in sorted(home.glob("prefect.db*")):
        found += _scan(database.read_bytes().decode("utf-8", errors="replace"), str(database))
    return found


def _all_logs(client: object) -> list:
    logs, offset = [], 0
    while page := client.read_logs(limit=200, offset=offset):
        logs += page
        offset += len(page)
    return logs


def test_a_literal_secret_in_a_stores_settings_says_to_use_credentials(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""name: literal
package: {make_package(tmp_path / "pkg", tmp_path / "origin", {("a", "b"): ("a/b.tif", b"x")})}
sources: {{https: {{prefix: "{ORIGIN}/"}}}}
targets:
  bucket: {{store: {{type: s3, bucket: my-bucket, secret_access_key: {ENV_SECRET}}}}}
outputs: out
"""
    )
    assert main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "targets.bucket.store.secret_access_key: unknown key 'secret_access_key'" in err
    assert "use credentials: {env: VAR}" in err
    assert ENV_SECRET not in err
