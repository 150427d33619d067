"""The lab's naming grammar: what every namespace and link is called, and how a sweep recognises its own.

Everything the lab creates carries a prefix so that `kalab lab down` and a crash-recovery sweep can find it.
Namespace names are global on the machine, so they carry the lab's *prefix* (``kalab-`` for a user's lab,
``kalab-t1234-`` for a test lab). Link names live inside lab namespaces only, so they need no per-lab part; they
all start with ``kalab-`` anyway, so a leaked link is recognisable wherever it turns up.

The ownership rule (who may sweep what)
---------------------------------------
A prefix is ``kalab-`` followed by zero or more ``<letters/digits>-`` tokens, e.g. ``kalab-`` or ``kalab-t123-``.
A namespace belongs to the lab at prefix P when its name is P followed by exactly one *role*:

* ``seg`` (the L2 segment's bridge), ``bastion``,
* a node name ``<letters>-<digits>`` (``master-0``; ``pod-<digits>`` is not a node name),
* ``pod-<9 hex digits>`` (a pod sandbox).

No role contains a ``<token>-`` that could itself be read as the rest of a longer prefix followed by another role
(``t123-master-0`` is not ``<letters>-<digits>``; ``pod-`` is followed by hex digits, which is no role). So the lab
at ``kalab-`` never claims ``kalab-t123-master-0`` and the lab at ``kalab-t123-`` never claims ``kalab-master-0``;
names that merely start with a prefix (``kalab-exp0``) are never claimed either.
"""

from __future__ import annotations

import hashlib
import re

from kalab.model.errors import KalabError

DEFAULT_PREFIX = "kalab-"

# Every link the lab creates starts with this, whatever the lab's prefix (links are never in the host namespace).
LINK_PREFIX = "kalab-"
# IFNAMSIZ is 16 bytes including the terminating NUL.
MAX_LINK_NAME = 15

SEGMENT_BRIDGE = "kalab-br0"
POD_BRIDGE = "kalab-cni0"
POD_INTERFACE = "kalab-eth0"
BASTION_PORT = "kalab-p-bastion"
_NODE_PORT_PREFIX = "kalab-p-"

SEGMENT_ROLE = "seg"
BASTION_ROLE = "bastion"
_POD_ROLE = "pod-"

# Nine hex digits fit a pod's node-side link into 15 characters ("kalab-" + 9) and make a collision between
# two pods of one lab vanishingly unlikely (36 bits); create_sandbox still checks for one.
POD_HASH_LENGTH = 9

_PREFIX = re.compile(r"^kalab-(?:[a-z0-9]+-)*$")
_LAB_NS = re.compile(rf"^{LINK_PREFIX}[a-z0-9-]+$")
_NODE_NAME = re.compile(r"^(?P<role>[a-z]+)-(?P<index>[0-9]+)$")
_POD_SUFFIX = re.compile(rf"^{_POD_ROLE}[0-9a-f]{{{POD_HASH_LENGTH}}}$")
# Pod keys end up in `ip -batch` lines and link aliases: no spaces, quotes or '#' (a batch comment).
_POD_KEY = re.compile(r"^[A-Za-z0-9._:/-]{1,200}$")


def check_prefix(prefix: str) -> str:
    """Return `prefix` if it follows the grammar (``kalab-`` plus optional ``<token>-`` parts), else raise."""
    if not _PREFIX.match(prefix):
        raise KalabError(
            f'The lab prefix "{prefix}" does not follow the naming rule; use "kalab-" or "kalab-" plus lower-case '
            'letters/digits ending in "-", e.g. "kalab-t123-".'
        )
    return prefix


def check_node_name(name: str) -> str:
    """Return `name` if it is a node name the lab can sweep (``<letters>-<digits>``, e.g. master-0), else raise."""
    if not _is_node_name(name):
        raise KalabError(
            f'The node name "{name}" must be lower-case letters, "-" and digits (not starting "pod-"), e.g. "master-0".'
        )
    return name


def _is_node_name(name: str) -> bool:
    # "pod-<digits>" is refused: it could equal "pod-<hash>" of a sandbox whose hash happens to be all digits.
    return bool(_NODE_NAME.match(name)) and not name.startswith(_POD_ROLE)


def check_link_name(name: str) -> str:
    """Return `name` if it starts with ``kalab-`` and fits the kernel's 15-character limit, else raise."""
    if not name.startswith(LINK_PREFIX) or len(name) > MAX_LINK_NAME or not re.match(r"^[a-z0-9-]+$", name):
        raise KalabError(
            f'The link name "{name}" must start with "{LINK_PREFIX}", use lower-case letters, digits and "-", '
            f"and be at most {MAX_LINK_NAME} characters."
        )
    return name


def check_pod_key(pod_key: str) -> str:
    """Return `pod_key` (e.g. ``demo/test-0``) if it is safe to record in the kernel, else raise."""
    if not _POD_KEY.match(pod_key):
        raise KalabError(
            f'The pod key "{pod_key}" must be 1–200 characters of letters, digits and ". _ : / -"; '
            'use "<namespace>/<name>".'
        )
    return pod_key


def check_lab_ns(ns: str) -> str:
    """Return `ns` if it is a lab namespace name; anything else (the host above all) is refused."""
    if not _LAB_NS.match(ns):
        raise KalabError(f'"{ns}" is not a lab namespace; lab namespaces are named "{LINK_PREFIX}…".')
    return ns


def segment_ns(prefix: str) -> str:
    """The namespace holding the segment's bridge."""
    return check_prefix(prefix) + SEGMENT_ROLE


def bastion_ns(prefix: str) -> str:
    """The trainee's machine."""
    return check_prefix(prefix) + BASTION_ROLE


def node_ns(prefix: str, node: str) -> str:
    """A node's namespace: ``<prefix><node>``."""
    return check_prefix(prefix) + check_node_name(node)


def pod_hash(pod_key: str) -> str:
    """A short stable hash of the pod key: the same key always maps to the same namespace and link."""
    return hashlib.sha256(check_pod_key(pod_key).encode()).hexdigest()[:POD_HASH_LENGTH]


def pod_ns(prefix: str, pod_key: str) -> str:
    """A pod sandbox's namespace: ``<prefix>pod-<hash>``."""
    return check_prefix(prefix) + _POD_ROLE + pod_hash(pod_key)


def pod_host_link(pod_key: str) -> str:
    """The node-side end of a pod's veth: ``kalab-<hash>`` (attached to the node's pod bridge)."""
    return LINK_PREFIX + pod_hash(pod_key)


def node_port(node: str) -> str:
    """The segment bridge's port towards a node: ``kalab-p-`` + role initial + index (master-0 → kalab-p-m0)."""
    match = _NODE_NAME.match(check_node_name(node))
    assert match is not None  # check_node_name guarantees it
    return check_link_name(_NODE_PORT_PREFIX + match["role"][0] + match["index"])


def is_lab_role(suffix: str) -> bool:
    """Whether `suffix` (a namespace name minus the prefix) is one of the roles the lab creates."""
    return suffix in (SEGMENT_ROLE, BASTION_ROLE) or _is_node_name(suffix) or bool(_POD_SUFFIX.match(suffix))


def is_pod_ns(prefix: str, name: str) -> bool:
    """Whether `name` is a pod sandbox namespace of the lab at `prefix`."""
    return name.startswith(check_prefix(prefix)) and bool(_POD_SUFFIX.match(name[len(prefix) :]))


def belongs_to(prefix: str, name: str) -> bool:
    """Whether the namespace `name` is one the lab at `prefix` created (see the module's ownership rule)."""
    return name.startswith(check_prefix(prefix)) and is_lab_role(name[len(prefix) :])
