"""schemathesis (`st run`) against a hub started as `iothub serve` starts it: no 5xx, every answer as documented.

Why a served hub and not the ASGI app in-process: the answers then pass through uvicorn, the real socket and the
process's own settings and logging, as a client meets them (a 40 ms Nagle stall on keep-alive was found this way).
Three callers at once: an admin key, a technician key limited to one grid, and no key. The example count is
bounded and the seed fixed, so a run is repeatable and takes about a minute on a quiet machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.core.served_hub import BAD_LOG_LINES, ServedHub, iothub_env, served_hub

pytestmark = pytest.mark.timeout(600)

ST = Path(sys.executable).with_name("st")
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)
# Per caller: the phases and the examples per operation (coverage cases are deterministic and not counted).
RUNS = {
    "admin": ("coverage,fuzzing", 8),
    "technician": ("coverage,fuzzing", 4),
    "anonymous": ("coverage,fuzzing", 2),
}
SEED = "20261203"


def seed_street(hub: ServedHub) -> str:
    """A street of two communities, a smoke sensor in each, and a technician key limited to the first grid."""
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    with httpx.Client(base_url=hub.url, headers=auth, timeout=30) as http:
        chain = [("D1", "district", None), ("D1-S1", "street", "D1")]
        for c in ("C1", "C2"):
            code = f"D1-S1-{c}"
            chain += [(code, "community", "D1-S1"), (f"{code}-G1", "grid", code)]
            chain += [
                (f"{code}-G1-B1", "building", f"{code}-G1"),
                (f"{code}-G1-B1-U1", "household", f"{code}-G1-B1"),
            ]
        for code, level, parent in chain:
            made = http.post(
                "/api/v1/places", json={"code": code, "level": level, "name": code, "parent": parent}
            )
            assert made.status_code == 201, made.text
        for n, c in enumerate(("C1", "C2"), 1):
            device = {"serial": f"SM-{n}", "kind": "smoke", "household": f"D1-S1-{c}-G1-B1-U1"}
            assert http.post("/api/v1/devices", json=device).status_code == 201
        key = http.post(
            "/api/v1/keys", json={"name": "tech", "role": "technician", "places": ["D1-S1-C1-G1"]}
        )
        assert key.status_code == 201, key.text
        text: str = key.json()["key"]
        return text


def st_run(hub: ServedHub, key: str | None, phases: str, examples: int, cwd: Path) -> subprocess.Popen[str]:
    """Start `st run` against the hub's OpenAPI document as one caller."""
    args = [str(ST), "run", f"{hub.url}/openapi.json", "--checks", CHECKS, "--phases", phases]
    args += ["--max-examples", str(examples), "--seed", SEED, "--no-color", "--request-timeout", "20"]
    # The live stream never ends by design; tests/core/test_place_limits.py reads it with a bound.
    args += ["--exclude-path", "/api/v1/events", "--generation-database", "none", "--warnings", "off"]
    if key is not None:
        args += ["--header", f"Authorization: Bearer {key}"]
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_schemathesis_finds_no_fault(database_url: str, tmp_path: Path) -> None:
    env = iothub_env(database_url, tmp_path / "var")
    with served_hub(env, tmp_path) as hub:
        keys = {"admin": hub.admin_key, "technician": seed_street(hub), "anonymous": None}
        runs = {
            who: st_run(hub, keys[who], phases, examples, tmp_path / who)
            for who, (phases, examples) in RUNS.items()
        }
        outputs = {who: proc.communicate(timeout=540)[0] for who, proc in runs.items()}
        log = hub.log()
    failed = {who: out[-6000:] for who, out in outputs.items() if runs[who].returncode != 0}
    assert not failed, "\n\n".join(f"===== st run as {who} =====\n{out}" for who, out in failed.items())
    for who, out in outputs.items():
        assert " passed" in out and "Tested: 0" not in out, f"{who}: {out[-2000:]}"
    for bad in BAD_LOG_LINES:
        assert bad not in log, log[-6000:]
