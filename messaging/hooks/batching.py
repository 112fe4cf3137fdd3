"""Group commit for webhooks: the events of concurrent requests stored by one INSERT.

A busy gateway calls back hundreds of times a second, one event per call (Kannel: one request per
delivery report). Stored one by one, every event costs its own commit, a WAL flush, and a round
trip or two; here the requests that arrive while an INSERT is running queue their events, and the
next INSERT stores all of them. One of the waiting requests does it (the leader), in its own
thread and database connection, then hands the lead to the oldest request still waiting: there
is no background thread to start, watch or stop.

Nothing can be lost: a request is answered only after the INSERT that holds its event has
committed; if that INSERT fails, every request of the batch fails (the provider retries it, and
the unique key makes the retry harmless). Inside a transaction (``ATOMIC_REQUESTS``, a test) the
event is stored in the caller's own transaction, uncoalesced, since a commit that is not ours to
make could still roll it back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from django.db import connection

from messaging.events import GatewayEventData
from messaging.services.events import gateway_events_record

MAX_BATCH = 1000
WAIT_SECONDS = 30.0


def _key(event: GatewayEventData) -> tuple[str, str, str, str]:
    """The event's unique key as stored (see ``gateway_events_record``)."""
    return (
        event.provider[:30],
        str(event.kind),
        str(event.external_id)[:120],
        event.key_sequence[:60],
    )


@dataclass(eq=False)
class _Pending:
    event: GatewayEventData
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # this request's thread is to store the next batch
    done: bool = False
    new: bool = False
    error: BaseException | None = None


class EventCoalescer:
    """Stores events for many request threads of one process, one INSERT per batch."""

    def __init__(self, *, max_batch: int = MAX_BATCH, wait_seconds: float = WAIT_SECONDS) -> None:
        self.max_batch = max_batch
        self.wait_seconds = wait_seconds
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._leading = False

    def record(self, event: GatewayEventData) -> bool:
        """Store ``event`` once, committed on return; True if it was new (not a replay)."""
        if connection.in_atomic_block:
            return bool(gateway_events_record(events=[event]))
        item = _Pending(event)
        with self._lock:
            self._queue.append(item)
            if not self._leading:
                self._leading = item.lead = True
        while not item.lead and not item.done:
            if item.wake.wait(self.wait_seconds):
                continue
            with self._lock:
                if item in self._queue and not item.lead:  # nobody has taken it yet: give up
                    self._queue.remove(item)
                    raise TimeoutError("gateway event not stored in time")
        if not item.done:
            self._lead(item)
        if item.error is not None:
            raise item.error
        return item.new

    def _lead(self, own: _Pending) -> None:
        try:
            while not own.done:
                with self._lock:
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                self._store(batch)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.wake.set()
                else:
                    self._leading = False

    def _store(self, batch: list[_Pending]) -> None:
        try:
            recorded = gateway_events_record(events=[p.event for p in batch])
        except BaseException as exc:  # every request of the batch fails, so each is retried
            for pending in batch:
                pending.error, pending.done = exc, True
                pending.wake.set()
            return
        new = {(r.provider, r.kind, r.external_id, r.sequence) for r in recorded}
        for pending in batch:
            key = _key(pending.event)
            pending.new = key in new
            new.discard(key)  # a replay inside the batch is not new a second time
            pending.done = True
            pending.wake.set()


coalescer = EventCoalescer()
