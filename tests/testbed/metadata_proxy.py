"""A TCP proxy in front of a test broker that can answer a chosen client's Metadata requests with no broker.

That is what a Kafka broker in controlled shutdown does for a few tens of milliseconds (it is fenced, so its own
entry is gone, but it still serves requests) before it closes the connection. librdkafka (2.10 and later) drops
every broker such an answer does not list, and the answer, being a success, cancels the re-bootstrap that the
disconnect had just scheduled: the client is left without a broker for good (confluentinc/librdkafka#5301). The
real window is too short to hit on purpose; the proxy opens it at will (:meth:`MetadataProxy.strip_for`). The
broker must advertise the proxy's address (``advertised.listeners``), so that the clients' learned connections go
through it too.

Only Metadata responses of flexible versions (9 and later, what librdkafka 2.x sends to Kafka 4) are rewritten.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import struct
import threading
import time
from collections.abc import Callable

METADATA = 3


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _skip_tagged_fields(data: bytes, pos: int) -> int:
    count, pos = _uvarint(data, pos)
    for _ in range(count):
        _tag, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        pos += size
    return pos


def without_brokers(response: bytes) -> bytes:
    """A MetadataResponse (flexible version, header v1, without the size prefix) with an empty broker list."""
    pos = 4  # correlation id
    pos = _skip_tagged_fields(response, pos)  # response header v1
    pos += 4  # throttle_time_ms
    start = pos
    count, pos = _uvarint(response, pos)
    for _ in range(max(0, count - 1)):
        pos += 4  # node_id
        length, pos = _uvarint(response, pos)  # host: compact string
        pos += length - 1
        pos += 4  # port
        length, pos = _uvarint(response, pos)  # rack: compact nullable string
        pos += max(0, length - 1)
        pos = _skip_tagged_fields(response, pos)
    return response[:start] + b"\x01" + response[pos:]  # compact array of 0 elements


class MetadataProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``; :meth:`strip_for` empties the broker list of the
    Metadata responses to clients whose client.id starts with a prefix, for a while."""

    def __init__(self, port: int, target_port: int):
        self.port, self.target_port = port, target_port
        self._listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self._lock = threading.Lock()
        self._armed: tuple[str, float] | None = None  # (client.id prefix, until when: time.monotonic())
        self.stripped: list[str] = []  # client.ids whose Metadata response was stripped
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def start(self) -> MetadataProxy:
        self._spawn(self._accept)
        return self

    def strip_for(self, client_id_prefix: str, seconds: float) -> None:
        with self._lock:
            self._armed = (client_id_prefix, time.monotonic() + seconds)

    def stop(self) -> None:
        self._stop.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._sockets += [client, server]
            requests: dict[int, tuple[int, int, str]] = {}  # correlation id -> (api key, version, client.id)
            self._spawn(self._pipe, client, server, functools.partial(self._seen_request, requests=requests))
            self._spawn(self._pipe, server, client, functools.partial(self._response, requests=requests))

    def _seen_request(self, frame: bytes, requests: dict[int, tuple[int, int, str]]) -> tuple[bytes, bool]:
        api_key, version, correlation = struct.unpack(">hhi", frame[:8])
        (length,) = struct.unpack(">h", frame[8:10])
        client_id = frame[10 : 10 + length].decode(errors="replace") if length > 0 else ""
        requests[correlation] = (api_key, version, client_id)
        return frame, False

    def _response(self, frame: bytes, requests: dict[int, tuple[int, int, str]]) -> tuple[bytes, bool]:
        """The frame to send on, and whether to close the connection after it: the shutting-down broker's last
        answer is followed at once by its socket closing, so the client sees all its brokers down just before it
        reads that answer (which then also cancels the re-bootstrap the disconnect asked for)."""
        (correlation,) = struct.unpack(">i", frame[:4])
        api_key, version, client_id = requests.pop(correlation, (-1, -1, ""))
        if api_key != METADATA or version < 9:
            return frame, False
        with self._lock:
            if self._armed is None or time.monotonic() > self._armed[1] or not client_id.startswith(self._armed[0]):
                return frame, False
            self.stripped.append(client_id)
        return without_brokers(frame), True

    def _pipe(self, source: socket.socket, sink: socket.socket, edit: Callable[[bytes], tuple[bytes, bool]]) -> None:
        buffer = b""
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= 4:
                    (size,) = struct.unpack(">i", buffer[:4])
                    if len(buffer) < 4 + size:
                        break
                    (frame, close), buffer = edit(buffer[4 : 4 + size]), buffer[4 + size :]
                    sink.sendall(struct.pack(">i", len(frame)) + frame)
                    if close:
                        return
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
