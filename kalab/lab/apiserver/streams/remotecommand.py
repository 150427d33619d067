"""`pods/exec` and `pods/attach`: a command's streams carried over websocket channels (`wsstream`), as the
kubelet's remotecommand server carries them.

The command starts after the upgrade, so the kubelet's refusals travel on channel 3: a Failure `Status` (from v4
on; plain text before) followed by a normal websocket close. When the command exits, channel 3 carries its exit
code the same way.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import subprocess
import threading
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.hooks import ExecRequest, ExecSession, PodHooks
from kalab.lab.apiserver.streams.exchange import GONE, ClientGone, write_status
from kalab.lab.apiserver.streams.wsstream import (
    CLOSE_STREAM,
    ERROR,
    POLL,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    ChannelProtocol,
    Refused,
    WebSocket,
    negotiate,
    write_switching_protocols,
)
from kalab.lab.apiserver.transport import Exchange

# After our close frame, how long we wait for the client's before dropping the connection anyway.
_CLOSE_WAIT: Final = 5.0


def serve_exec(handler: Exchange, hooks: PodHooks, request: ExecRequest) -> None:
    """Upgrade the request to a channel websocket, run the command and pump its streams until it exits."""
    try:
        key, protocol = negotiate(handler)
    except Refused as refused:
        write_status(handler, refused.error, refused.headers)
        return
    # The connection is the websocket's from here on; it is never reused for another HTTP request.
    try:
        sock, leftover = write_switching_protocols(handler, key, protocol)
    except GONE:
        return
    # The command starts after the upgrade, so the kubelet's refusals travel on channel 3. Refused before the
    # upgrade, kubectl would retry over SPDY, which this server does not speak, and show that error instead of
    # the kubelet's. (Pod and container existence are the API server's to check beforehand, from storage, as
    # kube-apiserver does: then websocket and SPDY attempts get the same 404/400.)
    _ExecPump(sock, protocol, hooks, request, _wanted_streams(handler.request.target), leftover).run()


def _wanted_streams(path: str) -> frozenset[int]:
    """Output channels the client asked for. Only an explicit `stdout=false`/`stderr=false` drops one: client-go
    logs an error for every message on a channel it did not open."""
    query = parse_qs(urlsplit(path).query)
    wanted = set()
    for channel, name in ((STDOUT, "stdout"), (STDERR, "stderr")):
        values = query.get(name)
        if not values or values[-1].lower() not in ("false", "0"):
            wanted.add(channel)
    return frozenset(wanted)


def exit_status(code: int) -> dict[str, Any]:
    """The v4+ channel-3 Status for a finished command, as the kubelet writes it."""
    if code < 0:
        # Killed by a signal: report it as a shell and the kubelet do (137 for SIGKILL); clients parse 0..255.
        code = 128 + (-code)
    code = min(code, 255)
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def _end_session(session: ExecSession) -> None:
    """Stop a command whose client is gone, and reap it without waiting long."""
    # Teardown of a session that may already be gone: there is nobody left to report a failure to.
    with contextlib.suppress(Exception):
        session.kill()
        session.wait(timeout=2.0)


class _ExecPump:
    """Moves bytes between a websocket and an exec session until the command exits or the client leaves."""

    def __init__(
        self,
        sock: socket.socket,
        protocol: ChannelProtocol,
        hooks: PodHooks,
        request: ExecRequest,
        wanted: frozenset[int],
        leftover: bytes = b"",
    ) -> None:
        self.ws = WebSocket(sock, protocol, leftover)
        self.hooks = hooks
        self.session: ExecSession | None = None
        self.request = request
        self.wanted = wanted
        self.client_gone = threading.Event()  # the client closed, vanished, or broke the protocol
        self.stop = threading.Event()  # we are done: the reader may stop waiting for frames
        # Stdin is written from its own thread: a command that does not read its stdin must not stall the
        # reader, which has to keep answering pings and noticing that the client left.
        self.stdin: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.ended = False  # the command exited and was reaped, or was killed: nothing left to stop
        # A resize that arrives before the session exists is applied once it does.
        self._sizing = threading.Lock()
        self._early_size: tuple[int, int] | None = None

    def run(self) -> None:
        reader = threading.Thread(target=self._read_client, name="exec-ws-reader", daemon=True)
        reader.start()
        try:
            status = self._pump()
            if status is not None:
                if self.session is not None and not self.ended:
                    # The session failed rather than its command exiting: stop whatever it left running
                    # before the client learns it is over.
                    _end_session(self.session)
                    self.ended = True
                self._finish(status)
        except ClientGone:
            pass
        finally:
            if self.session is not None and not self.ended:
                _end_session(self.session)
            self.stdin.put(None)
            self.ws.close()
            reader.join(timeout=_CLOSE_WAIT)
            self.stop.set()
            reader.join(timeout=1.0)

    def _start(self) -> ExecSession:
        session = self.hooks.exec(self.request)
        with self._sizing:
            self.session = session
            early, self._early_size = self._early_size, None
        if early is not None:
            self._resize_session(session, *early)
        if self.request.stdin:
            threading.Thread(target=self._write_stdin, args=(session,), name="exec-stdin", daemon=True).start()
        return session

    def _pump(self) -> dict[str, Any] | None:
        """Start the command, copy its output until it ends; its channel-3 Status, or None when the client left."""
        try:
            session = self._start()
            while True:
                if self.client_gone.is_set():
                    return None
                item = session.read(POLL)
                if item is None:
                    continue
                stream, data = item
                if stream == 0:
                    break  # both outputs at EOF
                if data and stream in self.wanted:
                    self.ws.send_channel(stream, data)
            # Output is closed but the command may still run (and read stdin): wait for it as long as the
            # client stays.
            while True:
                if self.client_gone.is_set():
                    return None
                try:
                    code = session.wait(timeout=POLL)
                    self.ended = True
                    break
                except (TimeoutError, subprocess.TimeoutExpired):
                    continue
            return exit_status(code)
        except ApiError as error:
            return error.status()
        except ClientGone:
            raise
        except Exception as exc:  # the client must learn the session failed, on channel 3
            return ApiError(500, "InternalError", f"exec session failed: {exc}").status()

    def _finish(self, status: dict[str, Any]) -> None:
        if self.ws.protocol.version >= 4:
            self.ws.send_text_on_channel(ERROR, json.dumps(status))
        elif status.get("status") != "Success":
            # Before v4 the error channel carried only an error's text, and nothing on success.
            self.ws.send_text_on_channel(ERROR, str(status.get("message", "command failed")))

    def _read_client(self) -> None:
        try:
            for channel, payload in self.ws.channel_messages(lambda: not self.stop.is_set()):
                self._dispatch(channel, payload)
        except Exception:  # whatever broke the reader, the client is as good as gone
            return
        finally:
            self.client_gone.set()

    def _dispatch(self, channel: int, payload: bytes) -> None:
        if channel == STDIN:
            if self.request.stdin and payload:
                self.stdin.put(payload)
        elif channel == RESIZE:
            self._resize(payload)
        elif channel == CLOSE_STREAM and self.ws.protocol.version >= 5 and payload[:1] == bytes([STDIN]):
            self.stdin.put(None)

    def _resize(self, payload: bytes) -> None:
        try:
            size = json.loads(payload)
            width, height = int(size["Width"]), int(size["Height"])
        except (ValueError, KeyError, TypeError):
            return  # a malformed resize is not worth ending the session over
        with self._sizing:
            session = self.session
            if session is None:
                self._early_size = (width, height)
                return
        self._resize_session(session, width, height)

    @staticmethod
    def _resize_session(session: ExecSession, width: int, height: int) -> None:
        # Best effort: e.g. there is no terminal to resize (tty=false).
        with contextlib.suppress(Exception):
            session.resize(width, height)

    def _write_stdin(self, session: ExecSession) -> None:
        while True:
            data = self.stdin.get()
            try:
                if data is None:
                    session.close_stdin()
                    return
                session.write_stdin(data)
            except Exception:  # the command closed its stdin or ended: drop what is left
                return
