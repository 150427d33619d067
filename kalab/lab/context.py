"""What every part of a running lab shares: its storage, the data plane and where its files live."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.resources import Registry, ResourceType
from kalab.lab.apiserver.store import Obj, Store, now_rfc3339
from kalab.lab.dataplane.supervisor import Supervisor
from kalab.lab.dataplane.topology import Topology
from kalab.model import objects

_log = logging.getLogger(__name__)


@dataclass
class LabContext:
    store: Store
    state_dir: Path
    topology: Topology | None = None  # None when only the control plane runs (API tests)
    supervisor: Supervisor | None = None

    @property
    def registry(self) -> Registry:
        return self.store.registry

    def rt(self, key: str) -> ResourceType:
        """A served resource by storage key: `/pods`, `apps/daemonsets`, `redhatcop.redhat.io/keepalivedgroups`."""
        return self.registry.by_key(key)

    def record_event(self, involved: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        """An Event like the ones `oc describe` and `oc get events` show; repeats bump the count."""
        meta = objects.meta(involved)
        namespace = meta.get("namespace") or "default"
        name = f"{meta.get('name', 'unknown')}.{abs(hash((reason, message))) % 10**12:x}"
        events = self.rt("/events")
        now = now_rfc3339()
        existing = self.store.try_get(events, namespace, name)
        try:
            if existing is not None:
                existing["count"] = int(existing.get("count", 1)) + 1
                existing["lastTimestamp"] = now
                self.store.update(events, existing, namespace)
                return
            event: dict[str, Any] = {
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": involved.get("apiVersion"),
                    "kind": involved.get("kind"),
                    "name": meta.get("name"),
                    "namespace": meta.get("namespace"),
                    "uid": meta.get("uid"),
                },
                "reason": reason,
                "message": message,
                "type": type_,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": "kalab-lab"},
            }
            self.store.create(events, event, namespace)
        except ApiError as err:  # an event is a courtesy; never let it break a controller
            _log.debug("event %s not recorded: %s", reason, err.message)
