"""Claim codes: format, claim URLs, single use, uniform refusals and the per-principal rate limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from hub.db import Database
from hub.db.devices import Device, DeviceClaim
from hub.errors import AuthError, InvalidInput, RateLimited
from provisioning import claims
from provisioning.devices import Actor
from provisioning.enroll import DeviceSpec, claim_device, preregister_batch
from tests.provisioning.test_auth_kit import ManualClock, running_api
from tests.provisioning.test_devices_kit import SECRET, TECH, make_store, make_street


def test_code_format_normalisation_and_url_round_trip() -> None:
    """Codes are 3 groups of 4 Crockford symbols; look-alikes normalise; the URL parses back."""
    code = claims.new_claim_code()
    assert len(code) == 14 and code.count("-") == 2
    assert set(code.replace("-", "")) <= set(claims.CLAIM_ALPHABET)
    assert claims.normalize_code("ab0o-1il-x") == "AB00111X"
    assert claims.code_hash("k", "S1", "abcd-efgh") == claims.code_hash("k", "S1", "ABCDEFGH")
    assert claims.code_hash("k", "S1", code) != claims.code_hash("k", "S2", code)
    url = claims.claim_url("https://hub.example.cn/", "SD 01/7", code)
    assert url.startswith("https://hub.example.cn/claim/SD%2001%2F7?c=")
    assert claims.parse_claim_url(url) == ("SD 01/7", code)
    with pytest.raises(InvalidInput):
        claims.parse_claim_url("https://hub.example.cn/devices/SD1")


async def test_claim_once_then_refused_like_unknown_serial(db: Database) -> None:
    """A good code claims once; a reused code, a wrong code and an unknown serial get the same refusal."""
    clock = ManualClock()
    street = await make_street(db, clock())
    store = make_store(db, clock)
    specs = [DeviceSpec(serial=f"F-{i}", kind="smoke") for i in range(3)]
    async with db.session() as session:
        codes = dict(
            await preregister_batch(session, specs, batch="B2026", secret_key=SECRET, actor=TECH, clock=clock)
        )
        stored = (await session.scalars(select(DeviceClaim.code_hash))).all()
    assert len(stored) == 3 and not set(codes.values()) & set(stored)

    target = DeviceSpec(serial="", kind="", household=street.h1, position="kitchen")
    kw = {"actor": TECH, "store": store, "secret_key": SECRET, "clock": clock}
    done = await claim_device(db, "F-0", codes["F-0"].lower(), target, **kw)  # type: ignore[arg-type]
    assert done.device.state == "claimed" and done.device.position == "kitchen" and done.secrets.mqtt_password

    refusals = []
    for serial, code in [("F-0", codes["F-0"]), ("F-1", codes["F-2"]), ("NO-SUCH", codes["F-1"])]:
        with pytest.raises(AuthError) as info:
            await claim_device(db, serial, code, target, **kw)  # type: ignore[arg-type]
        refusals.append((type(info.value), info.value.status, info.value.message))
    assert len(set(refusals)) == 1 and refusals[0][1] == 401
    async with db.session() as session:
        f1 = (await session.scalars(select(Device).where(Device.serial == "F-1"))).one()
    assert f1.state == "registered" and f1.place_id is None


async def test_failed_claims_are_rate_limited_per_principal(db: Database) -> None:
    """After 5 refusals in 15 minutes even a right code is refused (429); another principal is not."""
    clock = ManualClock()
    street = await make_street(db, clock())
    store = make_store(db, clock)
    async with db.session() as session:
        codes = dict(
            await preregister_batch(
                session,
                [DeviceSpec(serial="R-1", kind="door")],
                batch="b",
                secret_key=SECRET,
                actor=TECH,
                clock=clock,
            )
        )
    target = DeviceSpec(serial="", kind="", household=street.h1)
    kw = {"store": store, "secret_key": SECRET, "clock": clock}
    for _ in range(5):
        with pytest.raises(AuthError):
            await claim_device(db, "R-1", "WRONG-CODE-0000", target, actor=TECH, **kw)  # type: ignore[arg-type]
    with pytest.raises(RateLimited) as limited:
        await claim_device(db, "R-1", codes["R-1"], target, actor=TECH, **kw)  # type: ignore[arg-type]
    assert limited.value.retry_after == 15 * 60
    other = Actor("tech-2", TECH.channel)
    with pytest.raises(AuthError):  # another principal is not limited: it gets the ordinary refusal
        await claim_device(db, "R-1", "WRONG-CODE-0001", target, actor=other, **kw)  # type: ignore[arg-type]
    clock.advance(minutes=16)
    done = await claim_device(db, "R-1", codes["R-1"], target, actor=TECH, **kw)  # type: ignore[arg-type]
    assert done.device.serial == "R-1"


async def test_claim_through_the_api_by_scanned_url(database_url: str, tmp_path: Path) -> None:
    """POST /claims with the QR's URL claims the device; a wrong code and an unknown serial answer alike."""
    async with running_api(database_url, tmp_path) as api:
        street = await make_street(api.hub.db, api.clock())
        secret = api.hub.settings.secret_key.get_secret_value()
        async with api.hub.db.session() as session:
            codes = dict(
                await preregister_batch(
                    session,
                    [DeviceSpec(serial="Q-1", kind="panic_button")],
                    batch="b",
                    secret_key=secret,
                    actor=TECH,
                )
            )
        tech = await api.key("technician", places=[street.grid1])
        url = claims.claim_url("https://hub.example", "Q-1", codes["Q-1"])
        wrong = await api.client.post(
            "/api/v1/claims",
            json={"serial": "Q-1", "code": "AAAA-AAAA-AAAA", "household": street.h1},
            headers=api.auth(tech),
        )
        unknown = await api.client.post(
            "/api/v1/claims",
            json={"serial": "Q-9", "code": codes["Q-1"], "household": street.h1},
            headers=api.auth(tech),
        )
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json()["detail"] == unknown.json()["detail"]
        outside = await api.client.post(
            "/api/v1/claims", json={"url": url, "household": street.h3}, headers=api.auth(tech)
        )
        assert outside.status_code == 403
        ok = await api.client.post(
            "/api/v1/claims", json={"url": url, "household": street.h1}, headers=api.auth(tech)
        )
        assert ok.status_code == 201, ok.text
        assert ok.json()["device"]["household"] == street.h1 and ok.json()["secrets"]["mqtt_password"]
