"""A real authenticating reverse proxy in front of a ``chroma run`` server, as README "Chroma server" lays out.

It does what the nginx snippet there does: a request without the expected header value is refused
(401 when the header is missing, 403 when it is wrong) and never reaches Chroma; the others are
forwarded with the credential removed. When Chroma cannot be reached it answers 502.
"""

from __future__ import annotations

import hmac
import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

# Headers that describe one connection, not the message (RFC 9110 7.6.1), plus the length we recompute.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length"}
)


class AuthProxy:
    """``http://127.0.0.1:PORT`` forwarding to ``upstream`` when ``header`` equals ``expected``.

    ``expected`` and ``upstream`` may be changed while it runs (a rotated token, a moved server).
    ``seen`` counts what happened to each request: ``forwarded``, ``missing``, ``wrong``, ``bad_gateway``.
    """

    def __init__(self, upstream: str, header: str, expected: str, open_paths: frozenset[str] = frozenset()) -> None:
        self.upstream = upstream
        self.open_paths = open_paths  # forwarded without a check, as a proxy may do for health checks
        self.header = header
        self.expected = expected
        self.seen: Counter[str] = Counter()
        self.forwarded_headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as chromadb's httpx client expects

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                sent = self.headers.get(proxy.header)
                if self.path in proxy.open_paths:
                    pass
                elif sent is None:
                    proxy._count("missing")
                    self._reply(401, b"401 Authorization Required\n", {"WWW-Authenticate": 'Bearer realm="chroma"'})
                    return
                elif not hmac.compare_digest(sent.encode(), proxy.expected.encode()):
                    proxy._count("wrong")
                    self._reply(403, b"403 Forbidden\n")
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != proxy.header.lower()
                }
                with proxy._lock:
                    proxy.forwarded_headers.append(dict(headers))
                target = urlparse(proxy.upstream)
                upstream = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 80, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    payload = answer.read()
                    passed = {k: v for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP}
                    status = answer.status
                except OSError:
                    proxy._count("bad_gateway")
                    self._reply(502, b"502 Bad Gateway\n")
                    return
                finally:
                    upstream.close()
                proxy._count("forwarded")
                self._reply(status, payload, passed)

            def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {"Content-Type": "text/plain"}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="auth-proxy", daemon=True)

    def _count(self, what: str) -> None:
        with self._lock:
            self.seen[what] += 1

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.forwarded_headers.clear()

    def __enter__(self) -> AuthProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
