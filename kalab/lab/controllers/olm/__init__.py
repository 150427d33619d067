"""OLM as a user sees it: catalog sources, Subscriptions resolved to InstallPlans, and ClusterServiceVersions that
walk Pending → InstallReady → Installing → Succeeded while their CRDs, RBAC and Deployments appear (FACTS.md §2).

The lab's catalogs are data here (which packages and channels a source offers); the CatalogSource objects in
`openshift-marketplace` are what users see, and a source whose object is gone offers nothing. Phases advance
with short real delays so that `oc get csv -w` (or a watch) shows each one, as on a cluster.
"""

from kalab.lab.controllers.olm.catalog import MARKETPLACE, Package, lab_catalogs, seed_catalog
from kalab.lab.controllers.olm.controller import OlmController
from kalab.lab.controllers.olm.csvs import PHASE_DELAY, RETRY_DELAY
from kalab.lab.controllers.olm.subscriptions import OPERATORS_API

__all__ = [
    "MARKETPLACE",
    "OPERATORS_API",
    "PHASE_DELAY",
    "RETRY_DELAY",
    "OlmController",
    "Package",
    "lab_catalogs",
    "seed_catalog",
]
