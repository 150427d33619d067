"""A level-triggered controller: store events become keys on a de-duplicating queue; one thread reconciles them.

Like client-go's workqueue: a key queued many times is reconciled once, a failing key is retried with backoff,
and `reconcile` may ask to be called again later (for polling the world outside the store, e.g. processes).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.resources import ResourceType
from kalab.lab.apiserver.store import Event, Obj
from kalab.lab.context import LabContext
from kalab.model import objects

_log = logging.getLogger(__name__)
KeyFunc = Callable[[Event], Iterable[str]]


def object_key(event: Event) -> list[str]:
    """`namespace/name` of the event's object (just `name` for cluster-scoped ones)."""
    meta = objects.meta(event.object)
    ns, name = meta.get("namespace"), meta.get("name", "")
    return [f"{ns}/{name}" if ns else name]


def split_key(key: str) -> tuple[str | None, str]:
    ns, sep, name = key.rpartition("/")
    return (ns if sep else None), name


class Controller:
    """Subclasses set `name`, fill `watches` (storage key → key function) and implement `reconcile`."""

    name = "controller"
    backoff_initial = 0.2
    backoff_cap = 10.0

    def __init__(self, ctx: LabContext) -> None:
        self.ctx = ctx
        self.watches: dict[str, KeyFunc] = {}
        self._cond = threading.Condition()
        self._ready: list[str] = []
        self._queued: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._failures: dict[str, int] = {}
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reconciled = 0  # for tests and status: how many reconciles ran
        self._busy = False

    # -- queue ---------------------------------------------------------------------------------------------

    def enqueue(self, key: str, after: float = 0.0) -> None:
        with self._cond:
            if after > 0:
                heapq.heappush(self._delayed, (time.monotonic() + after, next(self._seq), key))
            elif key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)
            self._cond.notify()

    def _on_event(self, event: Event) -> None:
        func = self.watches.get(event.rt.key)
        if func is None or event.type == "BOOKMARK":
            return
        for key in func(event):
            self.enqueue(key)

    def _next(self) -> str | None:
        with self._cond:
            while not self._stop.is_set():
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key = heapq.heappop(self._delayed)
                    if key not in self._queued:
                        self._queued.add(key)
                        self._ready.append(key)
                if self._ready:
                    key = self._ready.pop(0)
                    self._queued.discard(key)
                    self._busy = True
                    return key
                wait = self._delayed[0][0] - now if self._delayed else 1.0
                self._cond.wait(max(0.001, min(wait, 1.0)))
            return None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[str]:
        """Keys to reconcile at start: by default every existing object of every watched resource."""
        for key, func in self.watches.items():
            rt = self.ctx.rt(key)
            items, rv = self.ctx.store.list(rt)
            for obj in items:
                yield from func(Event("ADDED", rt, obj, rv))

    def start(self) -> None:
        self.ctx.store.subscribe(self._on_event)
        for key in self.initial_keys():
            self.enqueue(key)
        self._thread = threading.Thread(target=self._run, name=f"kalab-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def idle(self) -> bool:
        """Nothing queued and nothing being reconciled (delayed retries aside): the controller has caught up."""
        with self._cond:
            return not self._ready and not self._busy

    def _run(self) -> None:
        while (key := self._next()) is not None:
            try:
                again = self.reconcile(key)
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(self.backoff_cap, self.backoff_initial * 2 ** (failures - 1))
                _log.exception("%s: reconciling %s failed (retry in %.1f s)", self.name, key, delay)
                self.enqueue(key, after=delay)
                continue
            finally:
                with self._cond:
                    self._busy = False
            self._failures.pop(key, None)
            self.reconciled += 1
            if again:
                self.enqueue(key, after=again)

    def reconcile(self, key: str) -> float | None:
        raise NotImplementedError

    # -- writing -------------------------------------------------------------------------------------------

    def write_status(self, rt: ResourceType, obj: Obj, status: Obj) -> None:
        """Set `obj`'s status (in place) and write it through the status subresource.

        The controller owns the status it computes, so the write carries no resourceVersion: the last writer
        wins instead of conflicting with a spec edit that raced it. An object deleted meanwhile (404) is left
        be: its delete event reaches the controller anyway.
        """
        obj["status"] = status
        obj["metadata"].pop("resourceVersion", None)
        try:
            self.ctx.store.update(rt, obj, obj["metadata"].get("namespace"), subresource="status")
        except ApiError as err:
            if err.code != 404:
                raise
