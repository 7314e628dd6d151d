"""Import every table module so that Base.metadata knows them all (migrations, tests)."""

from hub.db.base import AuditEvent, Base

__all__ = ["AuditEvent", "Base"]
