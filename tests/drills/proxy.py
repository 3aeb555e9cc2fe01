"""A TCP proxy a drill puts between the platform's processes and one dependency (PostgreSQL, the
emulator's SQS), to make that dependency misbehave without touching the real one, which other
tests and other suites on this machine share.

Modes: ``pass`` forwards bytes both ways; ``down`` closes every open connection and accepts new
ones only to close them at once (the dependency is unreachable: clients fail fast);
``blackhole`` accepts connections and never answers (a peer that hangs: only the clients' own
timeouts end their calls). Every thread is a daemon; ``stop()`` closes every socket."""

from __future__ import annotations

import socket
import threading

from tests.drills.platform import free_port


class TcpProxy:
    def __init__(self, *, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.mode = "pass"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._stopped = threading.Event()
        self.accepted = 0
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def set_mode(self, mode: str) -> None:
        assert mode in {"pass", "down", "blackhole"}
        with self._lock:
            self.mode = mode
            self._close_all()  # the peer recovers or fails: connections it held are reset

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            self._close_all()
        self._listener.close()

    def _close_all(self) -> None:
        for sock in list(self._sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._sockets.clear()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                mode = self.mode
                if mode == "down":
                    client.close()
                    continue
                self._sockets.add(client)
            if mode == "blackhole":
                continue  # held open, never read from, never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.add(upstream)
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
