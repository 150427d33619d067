"""Field ownership as kube-apiserver keeps it: `metadata.managedFields`, server-side apply, and its conflicts.

Hand-written because no Python library implements Kubernetes' structured-merge-diff (the Go library kube-apiserver
uses); the modules follow its rules, in its vocabulary and its layout: `fieldpath` (paths, field sets, FieldsV1),
`schema` (how a resource's lists and maps merge), `typed` (the fields a value sets, comparing two versions,
merging an applied configuration) and `managedfields` (the managers of an object, updated by every write, and
apply with its conflicts). Callers use the names below.
"""

from kalab.lab.apiserver.fieldmanager.fieldpath import FieldSet, Path, from_fields_v1, path_text, to_fields_v1
from kalab.lab.apiserver.fieldmanager.managedfields import (
    Manager,
    Operation,
    apply,
    conflict_error,
    decode,
    encode,
    managers_of,
    record_update,
    user_agent_manager,
)
from kalab.lab.apiserver.fieldmanager.schema import COMPILED_GROUPS, Schema, schema_for, skeleton
from kalab.lab.apiserver.fieldmanager.typed import Comparison, compare, merge, remove, to_set

__all__ = [
    "COMPILED_GROUPS",
    "Comparison",
    "FieldSet",
    "Manager",
    "Operation",
    "Path",
    "Schema",
    "apply",
    "compare",
    "conflict_error",
    "decode",
    "encode",
    "from_fields_v1",
    "managers_of",
    "merge",
    "path_text",
    "record_update",
    "remove",
    "schema_for",
    "skeleton",
    "to_fields_v1",
    "to_set",
    "user_agent_manager",
]
