"""The lab's kubelet: runs the pods bound to lab nodes with real processes, and keeps their status true.

- runtime.py: the pod lifecycle (admit, sync, teardown) and writing the status;
- status.py: pure functions from what the kubelet knows (state.py) to phase, conditions and container statuses;
- streams.py: what the API server asks of a pod (logs, attach, exec, the pod proxy, port forwards), with
  attach.py for `pods/attach` sessions.
The process plumbing underneath (the supervisor, exec sessions with a pty, log files) is kalab.lab.dataplane's.
"""

from kalab.lab.controllers.kubelet.runtime import Kubelet

__all__ = ["Kubelet"]
