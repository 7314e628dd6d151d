"""The console channel: prints what would be sent, for the demo and for hubs without Twilio."""

from __future__ import annotations

import sys
from typing import TextIO

from alerts.notifiers.base import Outgoing, Sent

__all__ = ["ConsoleChannel"]


class ConsoleChannel:
    """Writes each message as one block to a stream; SMS count as delivered, calls stay queued."""

    def __init__(self, name: str = "console", stream: TextIO | None = None) -> None:
        self.name = name
        self._stream = stream
        self.sent = 0

    async def send(self, message: Outgoing) -> Sent:
        """Print the message and answer like a provider would."""
        stream = self._stream or sys.stdout
        what = "CALL" if message.twiml is not None else "SMS"
        print(f"[{what} #{message.outbox_id} → {message.to}]\n{message.body}\n", file=stream, flush=True)
        self.sent += 1
        # Nobody can press a key on a console: a call stays queued and the escalation's timers move on.
        status = "queued" if message.twiml is not None else "delivered"
        return Sent(sid=f"CONSOLE{message.outbox_id}", status=status)

    async def close(self) -> None:
        """Nothing to release."""
