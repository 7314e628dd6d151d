"""Device credentials: hashing, sealing, issue, rotation, revocation and the lookups ingest calls."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.db import Database
from hub.db.base import AuditEvent
from hub.db.devices import DeviceSecret
from hub.errors import AuthError, Conflict, StoreError
from provisioning.credentials import (
    ARGON2_MEMORY_KIB,
    CredentialEvents,
    SecretBox,
    hash_password,
    password_matches,
)
from provisioning.enroll import DeviceSpec, enroll_direct
from tests.provisioning.test_auth_kit import ManualClock
from tests.provisioning.test_devices_kit import SECRET, TECH, make_store, make_street


def test_password_hash_is_argon2id_with_the_documented_cost() -> None:
    """The stored hash is argon2id with m=4 MiB, t=1, p=1, and only the right password matches."""
    stored = hash_password("s3cret-password")
    assert stored.startswith("$argon2id$") and f"m={ARGON2_MEMORY_KIB},t=1,p=1" in stored
    assert password_matches(stored, "s3cret-password")
    assert not password_matches(stored, "s3cret-passwore")
    assert not password_matches(None, "s3cret-password")
    assert not password_matches("not-a-hash", "x")


def test_secret_box_binds_key_and_row() -> None:
    """A sealed blob opens with the same key and AAD only."""
    box = SecretBox(SECRET)
    sealed = box.seal(b"\x01" * 16, "device:1:psk:1")
    assert b"\x01" * 16 not in sealed.encode() and box.open(sealed, "device:1:psk:1") == b"\x01" * 16
    with pytest.raises(StoreError):
        box.open(sealed, "device:2:psk:1")
    with pytest.raises(StoreError, match="HUB_SECRET_KEY"):
        SecretBox("another key").open(sealed, "device:1:psk:1")


def test_events_reach_every_listener_even_if_one_fails() -> None:
    """A raising listener is logged; the others still hear; unsubscribe stops delivery."""
    events = CredentialEvents()
    heard: list[tuple[int, str]] = []

    def broken(device_id: int, what: str) -> None:
        raise RuntimeError("boom")

    events.subscribe(broken)
    stop = events.subscribe(lambda d, w: heard.append((d, w)))
    events.publish(7, "revoked")
    stop()
    events.publish(8, "rotated")
    assert heard == [(7, "revoked")]


async def test_coap_device_secrets_rotate_and_revoke(db: Database) -> None:
    """Issue → lookups work; rotate → old password refused; revoke → everything refused; events fire."""
    clock = ManualClock()
    street = await make_street(db, clock())
    events = CredentialEvents()
    heard: list[tuple[int, str]] = []
    events.subscribe(lambda d, w: heard.append((d, w)))
    store = make_store(db, clock, events)
    spec = DeviceSpec(serial="SD-COAP-1", kind="smoke", household=street.h1, transport="coap")
    async with db.session() as session:
        enrolled = await enroll_direct(session, spec, actor=TECH, store=store, clock=clock)
    device_id, first = enrolled.device.id, enrolled.secrets
    assert first.psk is not None and len(first.psk) == 16 and first.oscore is not None

    assert await store.verify_mqtt_password("SD-COAP-1", first.mqtt_password) == device_id
    assert await store.verify_mqtt_password(device_id, first.mqtt_password) == device_id
    assert await store.psk_for_identity(b"SD-COAP-1") == first.psk
    keys = await store.oscore_context_for("SD-COAP-1")
    assert keys == first.oscore
    async with db.session() as session:
        row = await session.get(DeviceSecret, device_id)
        assert row is not None and first.mqtt_password not in row.mqtt_hash
        assert first.psk.hex() not in (row.psk_sealed or "") and first.oscore.master_secret.hex() not in (
            row.oscore_sealed or ""
        )

    async with db.session() as session:
        second = await store.issue(session, enrolled.device, TECH.name, "api")
    store.announce(device_id, "rotated")
    with pytest.raises(AuthError):
        await store.verify_mqtt_password("SD-COAP-1", first.mqtt_password)
    assert await store.verify_mqtt_password("SD-COAP-1", second.mqtt_password) == device_id
    assert await store.psk_for_identity("SD-COAP-1") == second.psk != first.psk

    async with db.session() as session:
        await store.revoke(session, enrolled.device, TECH.name, "api", "lost")
    store.announce(device_id, "revoked")
    with pytest.raises(AuthError):
        await store.verify_mqtt_password("SD-COAP-1", second.mqtt_password)
    assert await store.psk_for_identity("SD-COAP-1") is None
    assert await store.oscore_context_for(device_id) is None
    assert heard == [(device_id, "rotated"), (device_id, "revoked")]
    with pytest.raises(Conflict):
        async with db.session() as session:
            await store.revoke(session, enrolled.device, TECH.name, "api")
    async with db.session() as session:
        actions = (
            await session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == str(device_id)))
        ).all()
    assert {"device.credentials_issued", "device.credentials_rotated", "device.credentials_revoked"} <= set(
        actions
    )


async def test_unknown_device_and_mqtt_device_lookups(db: Database) -> None:
    """An unknown serial is refused like a wrong password; an MQTT device has no PSK or OSCORE keys."""
    clock = ManualClock()
    street = await make_street(db, clock())
    store = make_store(db, clock)
    async with db.session() as session:
        enrolled = await enroll_direct(
            session,
            DeviceSpec(serial="DR-1", kind="door", household=street.h2),
            actor=TECH,
            store=store,
            clock=clock,
        )
    with pytest.raises(AuthError) as unknown:
        await store.verify_mqtt_password("NOPE", enrolled.secrets.mqtt_password)
    with pytest.raises(AuthError) as wrong:
        await store.verify_mqtt_password("DR-1", "wrong")
    assert unknown.value.message == wrong.value.message
    assert enrolled.secrets.psk is None and await store.psk_for_identity("DR-1") is None
    assert await store.oscore_context_for("DR-1") is None
