"""TCP ports for the test bed and the tests, from a block of ports no other process is handed.

Binding port 0, closing the socket and passing the number on races: until the component binds it, the kernel may
give the same port to any process's outgoing connection (it did: ``kube-scheduler ... bind: address already in
use``). So ports come from below the kernel's ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``), which
it never hands out on its own, in blocks of :data:`BLOCK_SIZE` that a process claims for itself with a file in
:data:`REGISTRY` (created exclusively; a claim whose process is gone is taken over). Within its block a process
hands out each port once, after checking that nothing listens on it.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
from pathlib import Path

REGISTRY = Path(os.environ.get("KINFER_PORT_REGISTRY", "/tmp/kinfer-testbed-ports"))
BLOCK_SIZE = 64
LOWEST = 10000


def ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortBlock:
    """A claimed block of ports, handed out one at a time (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ports: list[int] = []
        self.claims: list[Path] = []

    def _claim(self) -> None:
        blocks = list(range(LOWEST // BLOCK_SIZE, ephemeral_low() // BLOCK_SIZE))
        random.shuffle(blocks)
        REGISTRY.mkdir(parents=True, exist_ok=True)
        for index in blocks:
            claim = REGISTRY / str(index)
            for _attempt in range(2):
                try:
                    fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    with contextlib.suppress(OSError, ValueError):
                        if not _pid_alive(int(claim.read_text() or "0")):
                            claim.unlink()  # its process is gone: take the block over
                            continue
                    break
                with os.fdopen(fd, "w") as out:
                    out.write(str(os.getpid()))
                self.claims.append(claim)
                self._ports = list(range(index * BLOCK_SIZE, (index + 1) * BLOCK_SIZE))
                return
        raise RuntimeError(f"no free block of {BLOCK_SIZE} ports in {REGISTRY} below {ephemeral_low()}")

    def take(self) -> int:
        with self._lock:
            while True:
                if not self._ports:
                    self._claim()
                port = self._ports.pop(0)
                if _bindable(port):
                    return port

    def release(self) -> None:
        for claim in self.claims:
            with contextlib.suppress(OSError, ValueError):
                if int(claim.read_text() or "0") == os.getpid():
                    claim.unlink()
        self.claims.clear()


_blocks: dict[int, PortBlock] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on and no other process of this machine is handed."""
    block = _blocks.get(os.getpid())  # a forked child claims blocks of its own
    if block is None:
        import atexit

        block = _blocks[os.getpid()] = PortBlock()
        atexit.register(block.release)
    return block.take()
