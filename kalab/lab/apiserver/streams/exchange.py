"""What every pod stream shares about its HTTP exchange: a client that went away, and errors answered as Status.

A stream outlives the request/response cycle `transport` manages, so each one notices for itself that its client
is gone, and answers an error before its stream starts as kube-apiserver does: a `Status` object with its code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Final

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.transport import Exchange

# A client that has gone away shows up as an OSError of some kind when we write to it: BrokenPipeError,
# ConnectionResetError, ssl.SSLError (TLS), TimeoutError (it stopped reading) are all OSErrors.
GONE: Final = OSError


class ClientGone(Exception):
    pass


def tokens(values: Iterable[str]) -> list[str]:
    """The comma-separated tokens of header values (`Connection`, `Upgrade`, `Sec-WebSocket-Protocol` …)."""
    return [token.strip() for value in values for token in value.split(",") if token.strip()]


def write_status(handler: Exchange, error: ApiError, headers: Sequence[tuple[str, str]] = ()) -> None:
    body = json.dumps(error.status()).encode("utf-8")
    try:
        handler.respond(error.code, [("Content-Type", "application/json"), *headers], body)
    except GONE:
        handler.close_after()
