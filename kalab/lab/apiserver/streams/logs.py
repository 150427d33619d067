"""`pods/log`: a container's log as `text/plain`; when following, a chunked response flushed chunk by chunk until
the log ends or the client goes away, which a followed log has to notice by itself (`peer_closed`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Final

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.hooks import LogRequest, PodHooks
from kalab.lab.apiserver.streams.exchange import GONE, ClientGone, write_status
from kalab.lab.apiserver.transport import Exchange

_log = logging.getLogger(__name__)

# A followed log waits this long for its first chunk before sending the headers, so that an error the kubelet
# only raises on the first read (a generator) still becomes a proper Status response.
_FIRST_LOG_WAIT: Final = 0.5
_RECV_SIZE: Final = 64 * 1024  # what one read of a TLS connection takes to find the client's close


def serve_log(handler: Exchange, hooks: PodHooks, request: LogRequest) -> None:
    """The container's log as text/plain; when following, streamed until the log ends or the client leaves."""
    try:
        chunks = hooks.logs(request)
        if request.follow:
            _follow_log(handler, chunks)
            return
        body = b"".join(chunks)
    except ApiError as error:
        write_status(handler, error)
        return
    else:
        try:
            handler.respond(200, [("Content-Type", "text/plain")], body)
        except GONE:
            handler.close_after()


class _LogEnd:
    pass


_LOG_END: Final = _LogEnd()


def _produce(
    chunks: Iterator[bytes], out: queue.SimpleQueue[bytes | _LogEnd | Exception], stop: threading.Event
) -> None:
    """Drives the kubelet's iterator in its own thread, so the handler can notice a departed client while the log
    is silent. The iterator is closed from this thread, the one that runs it, once the handler stops listening."""
    try:
        for chunk in chunks:
            if stop.is_set():
                break
            out.put(chunk)
        out.put(_LOG_END)
    except Exception as exc:  # handed to the handler thread, which decides what the client sees
        out.put(exc)
    finally:
        close = getattr(chunks, "close", None)
        if callable(close):
            # The kubelet's own cleanup; the stream is over either way.
            with contextlib.suppress(Exception):
                close()


def _follow_log(handler: Exchange, chunks: Iterator[bytes]) -> None:
    out: queue.SimpleQueue[bytes | _LogEnd | Exception] = queue.SimpleQueue()
    stop = threading.Event()
    threading.Thread(target=_produce, args=(chunks, out, stop), name="log-follow", daemon=True).start()
    try:
        first = out.get(timeout=_FIRST_LOG_WAIT)
    except queue.Empty:
        first = b""
    if isinstance(first, ApiError):
        stop.set()
        write_status(handler, first)
        return
    # Watching for the client's departure may consume what it sends meanwhile (see peer_closed): the connection
    # is not reused after a followed log.
    handler.close_after()
    sock = handler.sock
    try:
        # Chunked for an HTTP/1.1 client; for an HTTP/1.0 one the body simply ends with the connection.
        handler.start_stream(200, [("Content-Type", "text/plain")])
        item = first
        while True:
            if isinstance(item, _LogEnd):
                break
            if isinstance(item, Exception):
                # Headers are out: the only way left to tell the client is to end the stream early.
                _log.warning("log stream failed: %s", item)
                break
            if item:
                handler.write(item)
            item = _next_log_item(out, sock)
        handler.end()
    except (ClientGone, GONE):
        pass
    finally:
        stop.set()


def _next_log_item(
    out: queue.SimpleQueue[bytes | _LogEnd | Exception], sock: socket.socket
) -> bytes | _LogEnd | Exception:
    while True:
        try:
            return out.get(timeout=_FIRST_LOG_WAIT)
        except queue.Empty:
            if peer_closed(sock):
                raise ClientGone from None


def peer_closed(sock: socket.socket) -> bool:
    """Whether the client of a streamed response has hung up.

    While it is being sent a response the client has nothing to send, so the socket only becomes readable when
    the client closes. Plain TCP: a peek that finds the FIN leaves anything else in place. TLS 1.3 encrypts even
    the record type of a close_notify, so over TLS this reads: whatever the client sent meanwhile (a request sent
    ahead of time) is dropped, which is why followed logs close their connection afterwards.
    """
    if isinstance(sock, ssl.SSLSocket):
        if not sock.pending():
            try:
                readable, _, _ = select.select([sock], [], [], 0)
            except (OSError, ValueError):
                return True
            if not readable:
                return False
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            return sock.recv(_RECV_SIZE) == b""  # b"": close_notify or FIN
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False  # part of a record, or TLS housekeeping
        except OSError:
            return True
        finally:
            sock.settimeout(timeout)
    try:
        waiting, _, _ = select.select([sock], [], [], 0)
        if not waiting:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True
