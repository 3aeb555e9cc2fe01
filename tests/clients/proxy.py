"""A TCP proxy on 127.0.0.1 that loses responses: it forwards every request to the upstream
server, and for the next ``drop_posts`` connections that send a POST it closes the client's
connection as soon as the upstream starts answering, without passing the answer on. The server has
done the work by then (Django answers after its transaction commits); the client sees a connection
dropped after its request was sent."""

from __future__ import annotations

import select
import socket
import threading


class LosingProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, drop_posts: int = 1):
        self.upstream = (upstream_host, upstream_port)
        self.drop_posts = drop_posts
        self.dropped_responses: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LosingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopped.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _take_drop(self) -> bool:
        with self._lock:
            if self.drop_posts > 0:
                self.drop_posts -= 1
                return True
            return False

    def _pump(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream, timeout=10)
        dropping = False
        try:
            for _ in range(10_000):  # bounded: a test connection carries a handful of requests
                readable, _, _ = select.select([client, upstream], [], [], 15)
                if not readable:
                    return
                if client in readable:
                    data = client.recv(65536)
                    if not data:
                        return
                    if data.startswith(b"POST ") and not dropping:
                        dropping = self._take_drop()
                    upstream.sendall(data)
                if upstream in readable:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    if dropping:
                        self.dropped_responses.append(data)
                        return  # close the client's connection: the answer is lost
                    client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()
