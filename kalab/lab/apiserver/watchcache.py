"""Watch events and resourceVersions: what etcd's revisions and kube-apiserver's watch cache give the store.

Every change to a stored object is one event, numbered by the next resourceVersion, so a resourceVersion is a
position in the history. A watcher resumes from any resourceVersion the history still holds; an older one gets
410 Expired, as from kube-apiserver. Watchers wait on the store's lock, which every recorded event notifies.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from kalab.lab.apiserver.errors import gone
from kalab.lab.apiserver.resources import ResourceType

Obj = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
HISTORY = 20000  # watch events kept for resuming; older resourceVersions get 410 Expired


@dataclass(frozen=True)
class Event:
    type: EventType
    rt: ResourceType
    object: Obj
    rv: int


class History:
    """The events the store committed, in resourceVersion order, and the counter that numbers them.

    `next_rv`, `append` and `since` are called with the store's lock held (the condition given here); `watch`
    takes it itself, between waits."""

    def __init__(self, cond: threading.Condition, size: int = HISTORY) -> None:
        self._cond = cond
        self._rv = itertools.count(1)
        self.last_rv = 0
        self._events: deque[Event] = deque(maxlen=size)

    def next_rv(self) -> int:
        """The resourceVersion of the change being committed, which is the last one from now on."""
        self.last_rv = next(self._rv)
        return self.last_rv

    def append(self, event: Event) -> None:
        """Keep a committed change and wake every watcher."""
        self._events.append(event)
        self._cond.notify_all()

    def since(self, cursor: int) -> list[Event]:
        # Every resourceVersion is one event in the history, so the cursor maps straight to an index.
        if not self._events:
            return []
        skip = max(0, cursor - self._events[0].rv + 1)
        return list(itertools.islice(self._events, skip, None))

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        since: int | None,
        match: Callable[[Obj], bool],
        timeout: float,
        bookmark_every: float | None,
        stop: threading.Event | None,
    ) -> Iterator[Event]:
        """`rt`'s events after resourceVersion `since` (or from now) that `match`, until `timeout` or `stop`, with
        a BOOKMARK every `bookmark_every` seconds; never loses one. The objects are the stored ones: copy them."""
        with self._cond:
            cursor = self.last_rv if since is None else since
            if self._events and cursor < self._events[0].rv - 1 and cursor < self.last_rv:
                raise gone(f"too old resource version: {cursor} ({self._events[0].rv - 1})")
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + bookmark_every if bookmark_every else None
        while not (stop and stop.is_set()):
            with self._cond:
                pending = self.since(cursor)
                if not pending:
                    wake = min(deadline, next_bookmark or deadline) - time.monotonic()
                    if wake > 0:
                        self._cond.wait(min(wake, 1.0))
                    pending = self.since(cursor)
                last = self.last_rv
            for event in pending:
                cursor = event.rv
                ns = event.object["metadata"].get("namespace", "")
                if event.rt.key == rt.key and (not namespace or ns == namespace) and match(event.object):
                    yield Event(event.type, rt, event.object, event.rv)
            now = time.monotonic()
            if now >= deadline:
                return
            if next_bookmark is not None and now >= next_bookmark:
                cursor = max(cursor, last)
                yield Event(
                    "BOOKMARK",
                    rt,
                    {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": str(cursor)}},
                    cursor,
                )
                next_bookmark = now + (bookmark_every or 0)
