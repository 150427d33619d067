"""The openAPIV3Schema of the OpenShift, OLM and monitoring kinds the lab serves as built-ins.

On OpenShift 4 each of these is a CustomResourceDefinition, so kube-apiserver publishes, defaults and prunes them
from these schemas exactly as for any CRD. The fields the lab and the runbook use are spelled out with their types,
required fields, enums and defaults (SCC `userNamespaceLevel`, OperatorGroup `spec.upgradeStrategy`); large subtrees
the lab does not interpret (a CSV's install strategy, status blocks written by OLM) keep unknown fields, so nothing
the lab stores is pruned away.

It stays one module (over 500 lines) because it is data, one schema per kind, and the kinds share their pieces.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_BOOL: Schema = {"type": "boolean"}
_INT: Schema = {"type": "integer", "format": "int32"}
_INT64: Schema = {"type": "integer", "format": "int64"}
_TIME: Schema = {"type": "string", "format": "date-time"}
_STRINGS: Schema = {"type": "array", "items": {"type": "string"}}
_ANY_OBJECT: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _obj(
    description: str,
    properties: dict[str, Schema],
    required: list[str] | None = None,
    *,
    map_type: str = "",
    default: Any = None,
) -> Schema:
    schema: Schema = {"description": description, "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if map_type:
        schema["x-kubernetes-map-type"] = map_type
    if default is not None:
        schema["default"] = default
    return schema


def _d(schema: Schema, description: str) -> Schema:
    return {**schema, "description": description}


def _kind(description: str, spec: Schema | None, status: Schema | None, **top: Schema) -> Schema:
    properties: dict[str, Schema] = {
        "apiVersion": _d(
            _STRING,
            "APIVersion defines the versioned schema of this representation of an object. "
            "Servers should convert recognized schemas to the latest internal value, and may reject "
            "unrecognized values.",
        ),
        "kind": _d(
            _STRING,
            "Kind is a string value representing the REST resource this object represents. Servers "
            "may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.",
        ),
        "metadata": {"type": "object"},
    }
    if spec is not None:
        properties["spec"] = spec
    if status is not None:
        properties["status"] = status
    properties.update(top)
    return {"description": description, "type": "object", "properties": properties}


_CONDITIONS: Schema = {
    "description": "Conditions is a list of conditions and their status.",
    "type": "array",
    "items": _obj(
        "A condition of the object.",
        {
            "lastHeartbeatTime": _TIME,
            "lastTransitionTime": _TIME,
            "lastUpdateTime": _TIME,
            "message": _STRING,
            "reason": _STRING,
            "status": _STRING,
            "type": _STRING,
        },
        ["status", "type"],
    ),
}
_OBJECT_REFERENCE: Schema = _obj(
    "A reference to an object.",
    {
        "apiVersion": _STRING,
        "fieldPath": _STRING,
        "kind": _STRING,
        "name": _STRING,
        "namespace": _STRING,
        "resourceVersion": _STRING,
        "uid": _STRING,
    },
    map_type="atomic",
)
_LABEL_SELECTOR: Schema = _obj(
    "A label query over a set of resources.",
    {
        "matchExpressions": {
            "type": "array",
            "items": _obj(
                "A label selector requirement.",
                {"key": _STRING, "operator": _STRING, "values": _STRINGS},
                ["key", "operator"],
            ),
        },
        "matchLabels": {"type": "object", "additionalProperties": _STRING},
    },
    map_type="atomic",
)
_RANGES: Schema = {
    "type": "array",
    "items": _obj("IDRange provides a min/max of an allowed range of IDs.", {"max": _INT64, "min": _INT64}),
}
_STRATEGY_TYPE = "type is the strategy that will dictate the allowable values."


def _scc() -> Schema:
    nullable_strings = {**_STRINGS, "nullable": True}
    return _kind(
        "SecurityContextConstraints governs the ability to make requests that affect the SecurityContext that will "
        "be applied to a container. For historical reasons SCC was exposed under the core Kubernetes API group. "
        "That exposure is deprecated and will be removed in a future release - users should instead use the "
        "security.openshift.io group to manage SecurityContextConstraints.",
        None,
        None,
        allowHostDirVolumePlugin=_d(
            _BOOL, "allowHostDirVolumePlugin determines if the policy allow containers to use the HostDir volume plugin"
        ),
        allowHostIPC=_d(_BOOL, "allowHostIPC determines if the policy allows host ipc in the containers."),
        allowHostNetwork=_d(
            _BOOL, "allowHostNetwork determines if the policy allows the use of HostNetwork in the pod spec."
        ),
        allowHostPID=_d(_BOOL, "allowHostPID determines if the policy allows host pid in the containers."),
        allowHostPorts=_d(_BOOL, "allowHostPorts determines if the policy allows host ports in the containers."),
        allowPrivilegeEscalation={
            **_d(
                _BOOL,
                "allowPrivilegeEscalation determines if a pod can request to allow "
                "privilege escalation. If unspecified, defaults to true.",
            ),
            "nullable": True,
        },
        allowPrivilegedContainer=_d(
            _BOOL, "allowPrivilegedContainer determines if a container can request to be run as privileged."
        ),
        allowedCapabilities=_d(
            nullable_strings,
            "allowedCapabilities is a list of capabilities that can be requested to add to the container.",
        ),
        allowedFlexVolumes={
            "type": "array",
            "nullable": True,
            "items": _obj(
                "AllowedFlexVolume represents a single Flexvolume that is allowed to be used.",
                {"driver": _STRING},
                ["driver"],
            ),
        },
        allowedUnsafeSysctls=_d(
            nullable_strings, "allowedUnsafeSysctls is a list of explicitly allowed unsafe sysctls, defaults to none."
        ),
        defaultAddCapabilities=_d(
            nullable_strings,
            "defaultAddCapabilities is the default set of capabilities that "
            "will be added to the container unless the pod spec specifically drops the "
            "capability.",
        ),
        defaultAllowPrivilegeEscalation={
            **_d(
                _BOOL,
                "defaultAllowPrivilegeEscalation controls the default setting "
                "for whether a process can gain more privileges than its parent process.",
            ),
            "nullable": True,
        },
        forbiddenSysctls=_d(
            nullable_strings, "forbiddenSysctls is a list of explicitly forbidden sysctls, defaults to none."
        ),
        fsGroup={
            **_obj(
                "fsGroup is the strategy that will dictate what fs group is used by the SecurityContext.",
                {"ranges": _RANGES, "type": _d(_STRING, _STRATEGY_TYPE)},
            ),
            "nullable": True,
        },
        groups=_d(nullable_strings, "The groups that have permission to use this security context constraints"),
        priority={
            **_d(
                _INT,
                "priority influences the sort order of SCCs when evaluating which SCCs to try first "
                "for a given pod request based on access in the Users and Groups fields.",
            ),
            "nullable": True,
        },
        readOnlyRootFilesystem=_d(
            _BOOL,
            "readOnlyRootFilesystem when set to true will force containers to run with a read only root file system.",
        ),
        requiredDropCapabilities=_d(
            nullable_strings, "requiredDropCapabilities are the capabilities that will be dropped from the container."
        ),
        runAsUser={
            **_obj(
                "runAsUser is the strategy that will dictate what RunAsUser is used in the SecurityContext.",
                {"type": _d(_STRING, _STRATEGY_TYPE), "uid": _INT64, "uidRangeMax": _INT64, "uidRangeMin": _INT64},
            ),
            "nullable": True,
        },
        seLinuxContext={
            **_obj(
                "seLinuxContext is the strategy that will dictate what labels will be set in the SecurityContext.",
                {
                    "seLinuxOptions": _obj(
                        "seLinuxOptions required to run as; required for MustRunAs",
                        {"level": _STRING, "role": _STRING, "type": _STRING, "user": _STRING},
                    ),
                    "type": _d(_STRING, _STRATEGY_TYPE),
                },
            ),
            "nullable": True,
        },
        seccompProfiles=_d(
            nullable_strings,
            "SeccompProfiles lists the allowed profiles that may be set for the pod "
            "or container's seccomp annotations.",
        ),
        supplementalGroups={
            **_obj(
                "supplementalGroups is the strategy that will dictate what supplemental groups "
                "are used by the SecurityContext.",
                {"ranges": _RANGES, "type": _d(_STRING, _STRATEGY_TYPE)},
            ),
            "nullable": True,
        },
        userNamespaceLevel={
            "description": "userNamespaceLevel determines if the policy allows host users in "
            'containers. Valid values are "AllowHostLevel", "RequirePodLevel", and omitted. '
            'When "AllowHostLevel" is set, a pod author may set `hostUsers` to either `true` or '
            '`false`. When "RequirePodLevel" is set, a pod author must set `hostUsers` to '
            '`false`. When omitted, the default value is "AllowHostLevel".',
            "type": "string",
            "default": "AllowHostLevel",
            "enum": ["AllowHostLevel", "RequirePodLevel"],
        },
        users=_d(nullable_strings, "The users who have permissions to use this security context constraints"),
        volumes=_d(nullable_strings, "volumes is a white list of allowed volume plugins."),
    ) | {
        "required": [
            "allowHostDirVolumePlugin",
            "allowHostIPC",
            "allowHostNetwork",
            "allowHostPID",
            "allowHostPorts",
            "allowPrivilegedContainer",
            "allowedCapabilities",
            "defaultAddCapabilities",
            "priority",
            "readOnlyRootFilesystem",
            "requiredDropCapabilities",
            "volumes",
        ]
    }


def _network() -> Schema:
    cluster_network = {
        "type": "array",
        "items": _obj(
            "ClusterNetworkEntry is a contiguous block of IP addresses from which pod IPs are allocated.",
            {
                "cidr": _d(_STRING, "The complete block for pod IPs."),
                "hostPrefix": {
                    "description": "The size (prefix) of block to allocate to each node.",
                    "type": "integer",
                    "format": "int32",
                    "minimum": 0,
                },
            },
        ),
    }
    spec = _obj(
        "spec holds user settable values for configuration. As a general rule, this SHOULD NOT be read directly. "
        "Instead, you should consume the NetworkStatus, as it indicates the currently deployed configuration.",
        {
            "clusterNetwork": _d(cluster_network, "IP address pool to use for pod IPs."),
            "externalIP": _obj(
                "externalIP defines configuration for controllers that affect Service.ExternalIP.",
                {
                    "autoAssignCIDRs": _d(
                        _STRINGS,
                        "autoAssignCIDRs is a list of CIDRs from which to automatically assign Service.ExternalIP.",
                    ),
                    "policy": _obj(
                        "policy is a set of restrictions applied to the ExternalIP field.",
                        {"allowedCIDRs": _STRINGS, "rejectedCIDRs": _STRINGS},
                    ),
                },
            ),
            "networkDiagnostics": _ANY_OBJECT,
            "networkType": _d(_STRING, "NetworkType is the plugin that is to be deployed (e.g. OVNKubernetes)."),
            "serviceNetwork": _d(_STRINGS, "IP address pool for services."),
            "serviceNodePortRange": _d(_STRING, "The port range allowed for Services of type NodePort."),
        },
    )
    status = _obj(
        "status holds observed values from the cluster. They may not be overridden.",
        {
            "clusterNetwork": cluster_network,
            "clusterNetworkMTU": _d(_INT, "ClusterNetworkMTU is the MTU for inter-pod networking."),
            "conditions": _CONDITIONS,
            "migration": _ANY_OBJECT,
            "networkType": _STRING,
            "serviceNetwork": _STRINGS,
        },
    )
    return _kind(
        "Network holds cluster-wide information about Network. The canonical name is `cluster`. It is used to "
        "configure the desired network configuration.",
        spec,
        status,
    ) | {"required": ["spec"]}


def _operator_group() -> Schema:
    upgrade_strategy = {
        "description": "UpgradeStrategy defines the upgrade strategy for operators in the namespace.",
        "type": "object",
        "default": {"name": "Default"},
        "properties": {
            "name": {
                "description": "Name of the upgrade strategy: Default (OLM only allows operators to move to the "
                "next version when the installation succeeded) or TechPreviewUnsafeFailForward.",
                "type": "string",
                "default": "Default",
                "enum": ["Default", "TechPreviewUnsafeFailForward"],
            }
        },
    }
    spec = _obj(
        "OperatorGroupSpec is the spec for an OperatorGroup resource.",
        {
            "selector": _d(_LABEL_SELECTOR, "Selector selects the OperatorGroup's target namespaces."),
            "serviceAccountName": _d(
                _STRING,
                "ServiceAccountName is the admin specified service account which will "
                "be used to deploy operator(s) in this operator group.",
            ),
            "staticProvidedAPIs": _d(
                _BOOL, "Static tells OLM not to update the OperatorGroup's providedAPIs annotation"
            ),
            "targetNamespaces": {
                **_d(
                    _STRINGS,
                    "TargetNamespaces is an explicit set of namespaces to target. If it is set, Selector is ignored.",
                ),
                "x-kubernetes-list-type": "set",
            },
            "upgradeStrategy": upgrade_strategy,
        },
        default={"upgradeStrategy": {"name": "Default"}},
    )
    status = _obj(
        "OperatorGroupStatus is the status for an OperatorGroupResource.",
        {
            "conditions": _CONDITIONS,
            "lastUpdated": _d(
                _TIME, "LastUpdated is a timestamp of the last time the OperatorGroup's status was Updated."
            ),
            "namespaces": _d(_STRINGS, "Namespaces is the set of target namespaces for the OperatorGroup."),
            "serviceAccountRef": _d(
                _OBJECT_REFERENCE, "ServiceAccountRef references the service account object specified."
            ),
        },
        ["lastUpdated"],
    )
    return _kind(
        "OperatorGroup is the unit of multitenancy for OLM managed operators. It constrains the installation of "
        "operators in its namespace to a specified set of target namespaces.",
        spec,
        status,
    )


def _subscription() -> Schema:
    spec = _obj(
        "SubscriptionSpec defines an Application that can be installed",
        {
            "channel": _STRING,
            "config": {
                **_ANY_OBJECT,
                "description": "SubscriptionConfig contains configuration specified for a subscription.",
            },
            "installPlanApproval": {
                "description": "Approval is the user approval policy for an InstallPlan. It "
                'must be one of "Automatic" or "Manual".',
                "type": "string",
                "enum": ["Automatic", "Manual"],
            },
            "name": _STRING,
            "source": _STRING,
            "sourceNamespace": _STRING,
            "startingCSV": _STRING,
        },
        ["name", "source", "sourceNamespace"],
    )
    catalog_health = _obj(
        "SubscriptionCatalogHealth describes the health of a CatalogSource the Subscription knows about.",
        {
            "catalogSourceRef": _d(_OBJECT_REFERENCE, "CatalogSourceRef is a reference to a CatalogSource."),
            "healthy": _d(_BOOL, "Healthy is true if the CatalogSource is healthy; false otherwise."),
            "lastUpdated": _d(_TIME, "LastUpdated represents the last time that the CatalogSourceHealth changed"),
        },
        ["catalogSourceRef", "healthy", "lastUpdated"],
    )
    status = _obj(
        "SubscriptionStatus contains information about the Subscription and the InstallPlan it created.",
        {
            "catalogHealth": {
                "description": "CatalogHealth contains the Subscription's view of its relevant CatalogSources' status.",
                "type": "array",
                "items": catalog_health,
            },
            "conditions": _CONDITIONS,
            "currentCSV": _d(_STRING, "CurrentCSV is the CSV the Subscription is progressing to."),
            "installPlanGeneration": _d(_INT, "InstallPlanGeneration is the current generation of the installplan"),
            "installPlanRef": _d(
                _OBJECT_REFERENCE,
                "InstallPlanRef is a reference to the latest InstallPlan that contains the Subscription's current CSV.",
            ),
            "installedCSV": _d(_STRING, "InstalledCSV is the CSV currently installed by the Subscription."),
            "installplan": _obj(
                "Install is a reference to the latest InstallPlan generated for the Subscription.",
                {"apiVersion": _STRING, "kind": _STRING, "name": _STRING, "uuid": _STRING},
                ["apiVersion", "kind", "name", "uuid"],
            ),
            "lastUpdated": _d(_TIME, "LastUpdated represents the last time that the Subscription status was updated."),
            "reason": _d(_STRING, "Reason is the reason the Subscription was transitioned to its current state."),
            "state": _d(_STRING, "State represents the current state of the Subscription"),
        },
        ["lastUpdated"],
    )
    return _kind("Subscription keeps operators up to date by tracking changes to Catalogs.", spec, status) | {
        "required": ["metadata", "spec"]
    }


def _install_plan() -> Schema:
    spec = _obj(
        "InstallPlanSpec defines a set of Application resources to be installed",
        {
            "approval": {
                "description": "Approval is the user approval policy for an InstallPlan. It must be one of "
                '"Automatic" or "Manual".',
                "type": "string",
                "enum": ["Automatic", "Manual"],
            },
            "approved": _BOOL,
            "clusterServiceVersionNames": _STRINGS,
            "generation": _INT,
            "source": _STRING,
            "sourceNamespace": _STRING,
        },
        ["approval", "approved", "clusterServiceVersionNames"],
    )
    status = {
        **_ANY_OBJECT,
        "description": "InstallPlanStatus represents the information about the status of "
        "steps required to complete installation.",
    }
    return _kind("InstallPlan defines the installation of a set of operators.", spec, status)


def _csv() -> Schema:
    spec = {
        **_ANY_OBJECT,
        "description": "ClusterServiceVersionSpec declarations tell OLM how to install an operator that can manage "
        "apps for a given version.",
        "properties": {
            "customresourcedefinitions": _ANY_OBJECT,
            "description": _d(
                _STRING,
                "Description of the operator. Can include the features, limitations or use-cases of the operator.",
            ),
            "displayName": _STRING,
            "install": _ANY_OBJECT,
            "installModes": {
                "description": "InstallModes specify supported installation types",
                "type": "array",
                "items": _obj(
                    "InstallMode associates an InstallModeType with a flag representing if the CSV supports it",
                    {"supported": _BOOL, "type": _STRING},
                    ["supported", "type"],
                ),
            },
            "maturity": _STRING,
            "provider": _ANY_OBJECT,
            "replaces": _d(
                _STRING, "The name of a CSV this one replaces. Should match the `metadata.Name` field of the old CSV."
            ),
            "version": _STRING,
        },
        "required": ["displayName", "install"],
    }
    status = {
        **_ANY_OBJECT,
        "description": "ClusterServiceVersionStatus represents information about the status of "
        "a CSV. Status may trail the actual state of a system.",
    }
    return _kind("ClusterServiceVersion is a Custom Resource of type `ClusterServiceVersionSpec`.", spec, status) | {
        "required": ["metadata", "spec"]
    }


def _catalog_source() -> Schema:
    spec = {
        **_ANY_OBJECT,
        "properties": {
            "address": _STRING,
            "displayName": _STRING,
            "image": _STRING,
            "publisher": _STRING,
            "sourceType": _d(_STRING, "SourceType is the type of source"),
            "updateStrategy": _ANY_OBJECT,
        },
        "required": ["sourceType"],
    }
    status = {**_ANY_OBJECT, "description": "CatalogSourceStatus represents the status of a CatalogSource."}
    return _kind("CatalogSource is a repository of CSVs, CRDs, and operator packages.", spec, status) | {
        "required": ["metadata", "spec"]
    }


def _pod_monitor() -> Schema:
    spec = {
        **_ANY_OBJECT,
        "description": "Specification of desired Pod selection for target discovery by Prometheus.",
        "properties": {
            "namespaceSelector": _ANY_OBJECT,
            "podMetricsEndpoints": {"type": "array", "items": _ANY_OBJECT},
            "selector": _LABEL_SELECTOR,
        },
        "required": ["selector"],
    }
    return _kind("PodMonitor defines monitoring for a set of pods.", spec, None) | {"required": ["spec"]}


def openshift_schemas() -> dict[tuple[str, str, str], Schema]:
    """(group, version, kind) → openAPIV3Schema, as the OpenShift CRDs of these kinds carry them."""
    return {
        ("security.openshift.io", "v1", "SecurityContextConstraints"): _scc(),
        ("config.openshift.io", "v1", "Network"): _network(),
        ("operators.coreos.com", "v1", "OperatorGroup"): _operator_group(),
        ("operators.coreos.com", "v1alpha1", "Subscription"): _subscription(),
        ("operators.coreos.com", "v1alpha1", "InstallPlan"): _install_plan(),
        ("operators.coreos.com", "v1alpha1", "ClusterServiceVersion"): _csv(),
        ("operators.coreos.com", "v1alpha1", "CatalogSource"): _catalog_source(),
        ("monitoring.coreos.com", "v1", "PodMonitor"): _pod_monitor(),
    }
