"""The takeover, in order: reload what the dead active stored, start the deciders, replay its journal, then listen.

1. **reload**: the device registry and the device state (last seen, last activity, sequence windows) as the
   previous active last wrote them; the deadman and household timers are re-armed from these.
2. **rules, outbox, cases**: the rule engine re-arms and hooks into ingest; the outbox sweeps what the dead
   active left "sending"; the scheduler takes the stored due steps (each once: a step and its messages
   commit together, and rows are claimed with ``FOR UPDATE SKIP LOCKED``).
3. **replay journal**: what the previous active acknowledged and journaled but had not finished goes
   through the pipeline, so its alarms reach the case side already listening (``JournalReplay``; nothing
   to do until the durable intake journal is wired in).
4. **transports**: CoAP, then MQTT, resuming the broker's persistent session under the same client id, so
   the messages queued while no hub consumed arrive now.
"""

from __future__ import annotations

from typing import Protocol

from hub.ha.coordinator import Step
from hub.ingest.service import IngestService
from hub.lifecycle import Lifecycle

__all__ = ["JournalReplay", "NoJournal", "takeover_steps"]


class JournalReplay(Protocol):
    """Replays what a dead active journaled (acknowledged to the device) and did not finish."""

    async def replay(self) -> int:
        """Feed every unfinished entry to the pipeline once; return how many."""


class NoJournal:
    """The replay step before the durable intake journal exists: nothing was journaled."""

    async def replay(self) -> int:
        """Nothing to replay."""
        return 0


def takeover_steps(
    ingest: IngestService, deciders: Lifecycle, transports: Lifecycle, journal: JournalReplay
) -> list[Step]:
    """The steps a new active runs, in order, once the previous one's lease is over."""

    async def reload() -> None:
        await ingest.directory.load_all()
        await ingest.states.load()

    return [
        Step("reload", reload),
        Step("rules, outbox, cases", deciders.start),
        Step("replay journal", journal.replay),
        Step("transports", transports.start),
    ]
