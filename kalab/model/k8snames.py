"""Kubernetes' name and label patterns (apimachinery's validation), once, for manifests and the lab's API server."""

from __future__ import annotations

import re
from typing import Final

DNS1123_LABEL: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN: Final = DNS1123_LABEL + r"(\." + DNS1123_LABEL + ")*"
DNS1035_LABEL: Final = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME: Final = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE: Final = f"({QUALIFIED_NAME})?"
CONFIG_KEY: Final = "[-._a-zA-Z0-9]+"

label_re: Final = re.compile(f"^{DNS1123_LABEL}$")
subdomain_re: Final = re.compile(f"^{DNS1123_SUBDOMAIN}$")
dns1035_re: Final = re.compile(f"^{DNS1035_LABEL}$")
qualified_re: Final = re.compile(f"^{QUALIFIED_NAME}$")
label_value_re: Final = re.compile(f"^{LABEL_VALUE}$")
config_key_re: Final = re.compile(f"^{CONFIG_KEY}$")
