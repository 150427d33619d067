"""The troubleshooting catalog's faults, made for real in a running lab and undone again.

break_fault("alice", "vrrp-blocked")   # iptables drops VRRP on the keepalived nodes
heal("alice")                          # undo whatever is broken
"""

from kalab.lab.faults.broken import Listed, break_fault, broken, faults, heal, mystery
from kalab.lab.faults.recipes import RECIPES

__all__ = ["RECIPES", "Listed", "break_fault", "broken", "faults", "heal", "mystery"]
