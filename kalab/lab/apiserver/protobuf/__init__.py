"""Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), which client-go and kubectl speak.

kubectl's typed generator commands (`kubectl create namespace|configmap|secret|deployment|service|role …`) send
their objects in protobuf (`run` and `expose` send JSON); the API server turns such bodies into the JSON objects
the store keeps, and answers in protobuf a client that accepts nothing else. The schema is Kubernetes' own
(schema.py), the wire handling the `protobuf` library's.
"""

from kalab.lab.apiserver.protobuf.envelope import MEDIA_TYPE, NotDecodable, decode, encode
from kalab.lab.apiserver.protobuf.media import accepts_only_protobuf, body_as_json, is_protobuf

__all__ = [
    "MEDIA_TYPE",
    "NotDecodable",
    "accepts_only_protobuf",
    "body_as_json",
    "decode",
    "encode",
    "is_protobuf",
]
