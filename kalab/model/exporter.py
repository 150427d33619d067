"""The keepalived_exporter 0.5.0 model: keepalived's dumps in, the exporter's samples and exposition out.

The exporter signals keepalived and reads what it dumps (FACTS §3): signal 36 writes ``keepalived.json``;
SIGUSR1/SIGUSR2 write the text files ``keepalived.data``/``keepalived.stats``. Both paths must give the same
samples, so the lab's exporter and the runbook's analysis agree whichever dump they read. keepalived's text
dumps have no parser library, so the two text parsers below are hand-written, each reading only the lines
the exporter needs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

from kalab.model.errors import KalabError

# keepalived's numeric VRRP states (0..3) as the exporter names them; anything else gets state="".
STATES: Final = ("INIT", "BACKUP", "MASTER", "FAULT")
VRRP_LABELS: Final = ("name", "intf", "vrid", "state")
UP: Final = "keepalived_up"


@dataclass(frozen=True)
class MetricSpec:
    """One metric family the exporter prints, and where keepalived's dumps carry its value."""

    name: str
    kind: Literal["gauge", "counter"]
    help: str
    stat: str = ""  # key in the JSON dump's "stats" object
    text: tuple[str, str] = ("", "")  # (section, key) in the SIGUSR2 stats dump; section "" = top level


def _counter(suffix: str, help_text: str, section: str, key: str) -> MetricSpec:
    return MetricSpec(f"keepalived_vrrp_{suffix}", "counter", help_text, suffix, (section, key))


# The HELP texts are the descriptions the exporter documents and prints for each metric.
# Order = the order the exporter collects them in for each instance.
METRICS: Final[tuple[MetricSpec, ...]] = (
    MetricSpec(UP, "gauge", "Status"),
    _counter("advert_rcvd", "Advertisements received", "Advertisements", "Received"),
    _counter("advert_sent", "Advertisements sent", "Advertisements", "Sent"),
    _counter("become_master", "Became master", "", "Became master"),
    _counter("release_master", "Released master", "", "Released master"),
    _counter("packet_len_err", "Packet length errors", "Packet Errors", "Length"),
    _counter("advert_interval_err", "Advertisement interval errors", "Packet Errors", "Advertisement Interval"),
    _counter("ip_ttl_err", "TTL errors", "Packet Errors", "TTL"),
    _counter("invalid_type_rcvd", "Invalid type errors", "Packet Errors", "Invalid Type"),
    _counter("addr_list_err", "Address list errors", "Packet Errors", "Address List"),
    _counter("invalid_authtype", "Authentication invalid", "Authentication Errors", "Invalid Type"),
    _counter("authtype_mismatch", "Authentication mismatch", "Authentication Errors", "Type Mismatch"),
    _counter("auth_failure", "Authentication failure", "Authentication Errors", "Failure"),
    _counter("pri_zero_rcvd", "Priority zero received", "Priority Zero", "Received"),
    _counter("pri_zero_sent", "Priority zero sent", "Priority Zero", "Sent"),
)
METRICS_BY_NAME: Final = {m.name: m for m in METRICS}
COUNTERS: Final = tuple(m for m in METRICS if m.kind == "counter")


@dataclass(frozen=True, init=False)
class Sample:
    """One exported value; labels are kept as sorted pairs so samples are hashable and compare equal."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def __init__(
        self, name: str, labels: Mapping[str, str] | Iterable[tuple[str, str]] = (), value: float = 0.0
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "labels", tuple(sorted(dict(labels).items())))
        object.__setattr__(self, "value", float(value))

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def label(self, key: str, default: str = "") -> str:
        return self.label_dict.get(key, default)


@dataclass(frozen=True)
class InstanceState:
    """Which state one VRRP instance reports: the answer to "which node is MASTER for this VIP?"."""

    name: str
    intf: str
    vrid: int
    state: str


@dataclass(frozen=True)
class KeepalivedInstance:
    """The parts of one instance's JSON ``data`` object the runbook and the lab look at."""

    iname: str
    ifp_ifname: str
    vrid: int
    state: str  # INIT/BACKUP/MASTER/FAULT, or "" for a state the exporter has no name for
    last_transition: float  # seconds since the epoch, as keepalived records it
    vips: tuple[str, ...]  # keepalived's own lines, e.g. "172.21.6.50 dev eth0 scope global set"
    base_priority: int
    effective_priority: int
    adver_int: float  # seconds
    stats: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)

    @property
    def vip_addresses(self) -> tuple[str, ...]:
        """Just the addresses: keepalived prefixes each VIP line with it."""
        return tuple(v.split()[0] for v in self.vips if v.split())


def state_name(code: int) -> str:
    """The exporter's label for keepalived's numeric state; codes it has no name for give ""."""
    return STATES[code] if 0 <= code < len(STATES) else ""


# --- the JSON dump (signal 36) -------------------------------------------------------------------------


def _malformed(detail: str) -> KalabError:
    return KalabError(f"keepalived's JSON dump is malformed: {detail}; re-dump it with signal 36 and retry.")


def _json_entries(text: str) -> list[Mapping[str, Any]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise _malformed(f"it is not JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    if not isinstance(doc, list):
        raise _malformed("the top level is not a list of instances")
    for i, entry in enumerate(doc, 1):
        parts = [entry.get(k) for k in ("data", "stats")] if isinstance(entry, dict) else [None]
        if not all(isinstance(p, dict) for p in parts):
            raise _malformed(f"instance {i} lacks its 'data' or 'stats' object")
    return doc


def _field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    # bool is an int in Python; keepalived never writes true/false where a number belongs.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _malformed(f"{where} has no valid '{key}'")
    return value


def _stats_from_json(stats: Mapping[str, Any], where: str) -> dict[str, int]:
    return {m.stat: _field(stats, m.stat, int, f"{where}'s stats") for m in COUNTERS}


def instances_from_json(text: str) -> list[KeepalivedInstance]:
    """Every VRRP instance in keepalived's JSON dump, in keepalived's order."""
    result = []
    for i, entry in enumerate(_json_entries(text), 1):
        data, where = entry["data"], f"instance {i}"
        vips = _field(data, "vips", list, where)
        if not all(isinstance(v, str) for v in vips):
            raise _malformed(f"{where} has a VIP that is not a string")
        result.append(
            KeepalivedInstance(
                iname=_field(data, "iname", str, where),
                ifp_ifname=_field(data, "ifp_ifname", str, where),
                vrid=_field(data, "vrid", int, where),
                state=state_name(_field(data, "state", int, where)),
                last_transition=float(_field(data, "last_transition", (int, float), where)),
                vips=tuple(vips),
                base_priority=_field(data, "base_priority", int, where),
                effective_priority=_field(data, "effective_priority", int, where),
                adver_int=float(_field(data, "adver_int", (int, float), where)),
                stats=_stats_from_json(entry["stats"], where),
            )
        )
    return result


def samples_from_json(text: str) -> list[Sample]:
    """What the exporter serves after reading keepalived's JSON dump: keepalived_up 1, then each instance's counters."""
    instances = instances_from_json(text)
    return _samples((InstanceState(k.iname, k.ifp_ifname, k.vrid, k.state), k.stats) for k in instances)


def _samples(instances: Iterable[tuple[InstanceState, Mapping[str, int]]]) -> list[Sample]:
    samples = [Sample(UP, {}, 1)]
    for inst, stats in instances:
        labels = {"name": inst.name, "intf": inst.intf, "vrid": str(inst.vrid), "state": inst.state}
        samples.extend(Sample(m.name, labels, stats[m.stat]) for m in COUNTERS)
    return samples


def down_samples() -> list[Sample]:
    """What the exporter serves when keepalived did not answer the signal: only keepalived_up 0."""
    return [Sample(UP, {}, 0)]


# --- the text dumps (SIGUSR1 data, SIGUSR2 stats) ------------------------------------------------------


def _text_malformed(which: str, detail: str) -> KalabError:
    return KalabError(f"keepalived's {which} dump is malformed: {detail}; re-dump it and retry.")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _topology_lines(data: str) -> Iterator[str]:
    """Only the "VRRP Topology" section: other sections reuse keys such as "State" and "Interface"."""
    inside = False
    for line in data.splitlines():
        if line.startswith("------<"):
            inside = "VRRP Topology" in line
        elif inside:
            yield line


def _data_instances(data: str) -> list[tuple[str, dict[str, str]]]:
    """(name, its own "Key = value" lines) per instance; deeper-indented lines belong to sub-blocks."""
    found: list[tuple[str, dict[str, str]]] = []
    for line in _topology_lines(data):
        key, sep, value = line.strip().partition(" = ")
        if not sep:
            continue
        if _indent(line) == 1 and key == "VRRP Instance":
            found.append((value.strip(), {}))
        elif _indent(line) == 3 and found:
            found[-1][1].setdefault(key, value.strip())
    return found


def _state_from_data(name: str, props: Mapping[str, str]) -> InstanceState:
    missing = [k for k in ("Interface", "Virtual Router ID", "State") if k not in props]
    if missing:
        raise _text_malformed("data (SIGUSR1)", f"instance {name} has no {', '.join(missing)} line")
    vrid = props["Virtual Router ID"]
    if not vrid.isdigit():
        raise _text_malformed("data (SIGUSR1)", f"instance {name} has virtual router ID {vrid!r}")
    state = props["State"] if props["State"] in STATES else ""
    return InstanceState(name, props["Interface"], int(vrid), state)


_TEXT_KEYS: Final = {m.text: m.stat for m in COUNTERS}


def _stats_instances(stats: str) -> dict[str, dict[str, int]]:
    """Counters per instance; the same key (e.g. "Invalid Type") means different counters per section."""
    found: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    section = ""
    for line in stats.splitlines():
        text, depth = line.strip(), _indent(line)
        if not text:
            continue
        if depth == 0 and text.startswith("VRRP Instance:"):
            name = text.partition(":")[2].strip()
            if name in found:
                raise _text_malformed("stats (SIGUSR2)", f"instance {name} appears twice")
            current, section = found.setdefault(name, {}), ""
        elif current is not None and depth == 2 and text.endswith(":"):
            section = text[:-1]
        elif current is not None and depth in (2, 4):
            section = "" if depth == 2 else section
            _store_stat(current, section, text)
    return found


def _store_stat(into: dict[str, int], section: str, text: str) -> None:
    key, _, value = text.partition(":")
    stat = _TEXT_KEYS.get((section, key.strip()))
    if stat is None:
        return  # a line the exporter does not export
    if not value.strip().isdigit():
        raise _text_malformed("stats (SIGUSR2)", f"{section or 'top level'} {key.strip()!r} is {value.strip()!r}")
    into[stat] = int(value)


def samples_from_text_dumps(data: str, stats: str) -> list[Sample]:
    """The same samples as samples_from_json, from the SIGUSR1 (data) and SIGUSR2 (stats) text dumps."""
    states = [_state_from_data(name, props) for name, props in _data_instances(data)]
    counters = _stats_instances(stats)
    names = [s.name for s in states]
    if len(set(names)) != len(names):
        raise _text_malformed("data (SIGUSR1)", "an instance appears twice")
    if set(names) != set(counters):
        raise KalabError(
            f"keepalived's data and stats dumps list different instances ({sorted(names)} vs "
            f"{sorted(counters)}); take both dumps at the same time and retry."
        )
    for name, values in counters.items():
        missing = [m.stat for m in COUNTERS if m.stat not in values]
        if missing:
            raise _text_malformed("stats (SIGUSR2)", f"instance {name} has no {', '.join(missing)} counter")
    return _samples((s, counters[s.name]) for s in states)


# --- reading samples back ------------------------------------------------------------------------------


def vrrp_states(samples: Iterable[Sample]) -> list[InstanceState]:
    """One entry per VRRP instance the samples describe, sorted by instance name and router ID."""
    seen: set[InstanceState] = set()
    for s in samples:
        if s.name.startswith("keepalived_vrrp_"):
            labels = s.label_dict
            vrid = labels.get("vrid", "")
            if not vrid.isdigit():
                raise KalabError(
                    f"Sample {s.name} has vrid {vrid!r}, not a number; is this keepalived_exporter output?"
                )
            seen.add(InstanceState(labels.get("name", ""), labels.get("intf", ""), int(vrid), labels.get("state", "")))
    return sorted(seen, key=lambda i: (i.name, i.vrid, i.intf, i.state))


# --- the exposition format ------------------------------------------------------------------------------
# Hand-written rather than prometheus_client.generate_latest: the Python client always exposes a counter's
# samples as <name>_total, while keepalived_exporter (Go client_golang, text format 0.0.4) prints the bare
# counter name (keepalived_vrrp_advert_sent 2). Dashboards and alerts key on those exact names.


def format_go_float(value: float) -> str:
    """A value as Go's client prints it: strconv 'g' with shortest digits (2 → "2", 1234567 → "1.234567e+06")."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    assert isinstance(exponent, int)  # finite values only past this point
    point = len(digits) + exponent  # position of the decimal point within digits
    exp10 = point - 1
    body = _go_exponent(digits, exp10) if exp10 < -4 or exp10 >= 6 else _go_fixed(digits, point)
    return ("-" if sign else "") + body


def _go_exponent(digits: str, exp10: int) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"


def _go_fixed(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits
    whole = digits[:point].ljust(point, "0")
    frac = digits[point:]
    return whole + ("." + frac if frac else "")


def _escape(text: str, quote: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quote else text


def _sample_line(s: Sample) -> str:
    labels = ",".join(f'{k}="{_escape(v, quote=True)}"' for k, v in s.labels)
    return f"{s.name}{{{labels}}} {format_go_float(s.value)}" if labels else f"{s.name} {format_go_float(s.value)}"


def render_exposition(samples: Iterable[Sample]) -> str:
    """Prometheus text format 0.0.4 as the exporter serves it.

    Like Go's registry: families sorted by name, each with # HELP and # TYPE; samples sorted by their
    label values; a repeated name+labels is refused rather than printed twice.
    """
    families: dict[str, list[Sample]] = {}
    for s in samples:
        if s.name not in METRICS_BY_NAME:
            raise KalabError(f"{s.name} is not a keepalived_exporter metric; use one of the names in METRICS.")
        families.setdefault(s.name, []).append(s)
    lines: list[str] = []
    for name in sorted(families):
        spec, members = METRICS_BY_NAME[name], families[name]
        if len({m.labels for m in members}) != len(members):
            raise KalabError(f"{name} has two samples with the same labels; each instance must appear once.")
        lines += [f"# HELP {name} {_escape(spec.help, quote=False)}", f"# TYPE {name} {spec.kind}"]
        lines += [_sample_line(m) for m in sorted(members, key=lambda m: [v for _, v in m.labels])]
    return "".join(line + "\n" for line in lines)
