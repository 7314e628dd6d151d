"""High availability: an active and a standby hub on one PostgreSQL, leadership as an advisory-lock lease."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from hub.ha.coordinator import EXIT_LEASE_LOST, HaCoordinator, Step
from hub.ha.holder import Holder, lease_holder
from hub.ha.lease import LeaderLease
from hub.ha.takeover import JournalReplay, NoJournal, takeover_steps

if TYPE_CHECKING:
    from hub.config import Settings
    from hub.db import Database
    from hub.ingest.service import IngestService
    from hub.lifecycle import Lifecycle
    from hub.metrics import HubMetrics

__all__ = [
    "EXIT_LEASE_LOST",
    "HaCoordinator",
    "Holder",
    "JournalReplay",
    "LeaderLease",
    "NoJournal",
    "Step",
    "lease_holder",
    "make_coordinator",
    "takeover_steps",
]


def make_coordinator(
    settings: Settings,
    db: Database,
    ingest: IngestService,
    deciders: Lifecycle,
    transports: Lifecycle,
    metrics: HubMetrics,
    journal: JournalReplay | None = None,
) -> HaCoordinator:
    """The ``ha`` component for ``build_hub``: the consumers start only on the lease holder."""
    lease = LeaderLease(settings.database.url, settings.ha.node, lease=settings.ha.lease)
    steps = takeover_steps(ingest, deciders, transports, journal or NoJournal())
    return HaCoordinator(
        settings.ha,
        lease,
        [deciders, transports],
        steps,
        holder=functools.partial(lease_holder, db),
        registry=metrics.registry,
    )
