"""Authentication and roles through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.api.auth import require_roles
from tests.provisioning.test_auth_kit import running_api


async def test_missing_unknown_and_malformed_keys_are_401_with_a_challenge(
    database_url: str, tmp_path: Path
) -> None:
    """Every unauthenticated request gets 401, a Bearer challenge and a problem body."""
    async with running_api(database_url, tmp_path) as api:
        tries = [
            {},
            {"Authorization": "Bearer hub_000000000000_nope"},
            {"Authorization": "Bearer not-a-key"},
            {"Authorization": "Basic dXNlcjpwdw=="},
            {"X-API-Key": api.admin_key[:-1] + ("A" if api.admin_key[-1] != "A" else "B")},
        ]
        for headers in tries:
            response = await api.client.get("/api/v1/whoami", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["title"] == "unauthorized"


async def test_bearer_and_x_api_key_both_authenticate(database_url: str, tmp_path: Path) -> None:
    """The same key works in either header and names its holder."""
    async with running_api(database_url, tmp_path) as api:
        by_bearer = await api.client.get("/api/v1/whoami", headers=api.auth())
        by_header = await api.client.get("/api/v1/whoami", headers={"X-API-Key": api.admin_key})
    assert by_bearer.status_code == by_header.status_code == 200
    assert by_bearer.json() == by_header.json()
    assert by_bearer.json()["role"] == "admin" and by_bearer.json()["place_ids"] is None


async def test_revoked_key_is_401_at_once(database_url: str, tmp_path: Path) -> None:
    """A revoked key stops working on the next request and the revocation is audited."""
    async with running_api(database_url, tmp_path) as api:
        operator = await api.key("operator")
        assert (await api.client.get("/api/v1/whoami", headers=api.auth(operator))).status_code == 200
        key_id = operator.split("_")[1]
        response = await api.client.delete(f"/api/v1/keys/{key_id}", headers=api.auth())
        assert response.status_code == 204
        denied = await api.client.get("/api/v1/whoami", headers=api.auth(operator))
        assert denied.status_code == 401 and "revoked" in denied.json()["detail"]
        again = await api.client.delete(f"/api/v1/keys/{key_id}", headers=api.auth())
        assert again.status_code == 409
        trail = await api.client.get(
            "/api/v1/audit", params={"object_type": "api_key", "object_id": key_id}, headers=api.auth()
        )
    assert [e["action"] for e in trail.json()] == ["revoke", "create"]
    assert trail.json()[0]["actor"].startswith("key:") and trail.json()[0]["channel"] == "api"


async def test_wrong_role_is_403(database_url: str, tmp_path: Path) -> None:
    """Operators read the audit trail but may not manage keys; integrators may do neither."""
    async with running_api(database_url, tmp_path) as api:
        operator = await api.key("operator")
        integrator = await api.key("integrator")
        assert (await api.client.get("/api/v1/audit", headers=api.auth(operator))).status_code == 200
        listed = await api.client.get("/api/v1/keys", headers=api.auth(operator))
        audit = await api.client.get("/api/v1/audit", headers=api.auth(integrator))
        keys = await api.client.get("/api/v1/keys", headers=api.auth(integrator))
    assert listed.status_code == 403 and listed.json()["title"] == "forbidden"
    assert audit.status_code == 403 and keys.status_code == 403
    assert "www-authenticate" not in listed.headers


def test_require_roles_refuses_unknown_roles() -> None:
    """A typo in a route's roles fails at import, not at request time."""
    with pytest.raises(ValueError, match="supervisor"):
        require_roles("admin", "supervisor")
