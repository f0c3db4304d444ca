"""A TCP relay in this process between a client and a real server, to cut the connection between them."""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class TcpRelay:
    """A TCP relay in front of the server of ``target_url``, listening on ``host``; ``url`` is the same URL
    through the relay (user, database and options kept).

    ``restore()`` starts listening (again, on the same address); ``cut()`` drops every relayed connection
    and refuses new ones; ``cut_after(n)`` does so once ``n`` more bytes have come from the server, in the
    middle of an answer (a reply, a FETCH) at the byte the test chose. ``from_server`` counts the bytes
    relayed from the server so far.
    """

    def __init__(self, target_url: str, host: str = "127.0.0.1", default_port: int = 6379) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or default_port)
        self.host = host
        with socket.socket() as probe:  # a free port on that address
            probe.bind((host, 0))
            self.port = probe.getsockname()[1]
        user = f"{parts.username}@" if parts.username else ""
        self.url = urlunsplit((parts.scheme, f"{user}{host}:{self.port}", parts.path, parts.query, ""))
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._budget: int | None = None
        self.from_server = 0

    def restore(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.host, self.port))
        server.listen(128)
        server.settimeout(0.05)
        self._stop.clear()
        self._listener = threading.Thread(target=self._accept, args=(server,), daemon=True, name="tcp-relay")
        self._listener.start()

    def cut_after(self, nbytes: int) -> None:
        """Relay only ``nbytes`` more bytes from the server (all connections together), then ``cut()``."""
        with self._lock:
            self._budget = nbytes

    def cut(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=10)
            self._listener = None
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        with server:  # closed when cut: connecting is refused from then on
            while not self._stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                client.settimeout(None)
                upstream.settimeout(None)
                with self._lock:
                    self._sockets.update((client, upstream))
                for src, dst, from_server in ((client, upstream, False), (upstream, client, True)):
                    threading.Thread(target=self._pump, args=(src, dst, from_server), daemon=True).start()

    def _spend(self, data: bytes) -> tuple[bytes, bool]:
        """What of ``data`` from the server may pass, and whether the budget of ``cut_after`` is spent."""
        with self._lock:
            if self._budget is not None:
                data = data[:self._budget]
                self._budget -= len(data)
            self.from_server += len(data)
            spent = self._budget == 0
            if spent:
                self._budget = None
            return data, spent

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while data := src.recv(65536):
                data, spent = self._spend(data) if from_server else (data, False)
                dst.sendall(data)
                if spent:
                    self.cut()  # closes this pair too
                    return
        except OSError:
            pass
        for sock in (src, dst):  # either side gone: drop the pair, as a dying server would
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            for sock in (src, dst):
                if sock in self._sockets:
                    self._sockets.discard(sock)
                    sock.close()
