"""What stands between the app and a hostile request, before any view runs.

- **Host**: a request whose ``Host`` names no address the app serves (loopback names, the address
  it listens on, and any ``--allow-host`` name) is refused (403). A web page on another site that
  rebinds its own name to 127.0.0.1 (DNS rebinding) sends its own name as the Host: refused.
- **Origin**: a request that changes or computes (POST) and says it comes from a page of another
  origin is refused (403), whatever its content type (a ``text/plain`` form needs no preflight).
- **Body**: a body over the limit is refused (413) before it is read, whether its length is
  declared or it arrives in chunks (read up to the limit, never further).
- **Work**: requests that decode uploads or compute for seconds share a few slots; a request that
  finds none free within a few seconds is answered 503 with ``Retry-After``, never queued without
  bound (each holds megabytes of pixels).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HEAVY_SLOTS", "LOOPBACK", "BodyLimit", "Slots", "allowed_host", "same_origin"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
HEAVY_SLOTS = 2  # concurrent uploads and map computations
SLOT_WAIT_SECONDS = 5.0

StartResponse = Callable[..., Any]


def _host_name(host: str) -> str:
    """The name part of a ``Host`` value: "example.org:8000" -> "example.org", "[::1]:80" -> "::1"."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def allowed_host(host: str | None, allowed: Iterable[str]) -> bool:
    """Whether a request's ``Host`` names one of the app's own addresses (loopback, or ``allowed``)."""
    if not host:
        return False
    return _host_name(host) in {*LOOPBACK, *(a.lower().strip("[]") for a in allowed)}


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether an ``Origin`` header (absent: not a browser's cross-site request) is the request's own host."""
    if origin is None:
        return True
    parts = urlsplit(origin)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc.lower() == str(host).lower()


class BodyLimit:
    """WSGI middleware: a body over ``limit`` bytes gets 413, chunked or not; a chunked body within
    the limit is handed on with its length declared, so the app reads it whole."""

    def __init__(self, app: Callable[..., Any], limit: int):
        self.app, self.limit = app, limit

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > self.limit:
            return self._refuse(environ, start_response)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not declared:
            body = environ["wsgi.input"].read(self.limit + 1)
            if len(body) > self.limit:
                return self._refuse(environ, start_response)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["wsgi.input_terminated"] = False
        return self.app(environ, start_response)

    def _refuse(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        message = f"the request is over the limit of {self.limit} bytes"
        if str(environ.get("PATH_INFO", "")).startswith("/api/"):
            body, kind = json.dumps({"error": message}).encode(), "application/json"
        else:
            body, kind = f"413 Request Entity Too Large: {message}\n".encode(), "text/plain; charset=utf-8"
        start_response("413 Request Entity Too Large", [("Content-Type", kind), ("Content-Length", str(len(body))),
                                                        ("Connection", "close")])
        return [body]


class Slots:
    """A few slots for heavy work; :meth:`take` waits a little for one, else returns False."""

    def __init__(self, n: int = HEAVY_SLOTS, wait: float = SLOT_WAIT_SECONDS):
        self.semaphore, self.wait = threading.BoundedSemaphore(n), wait

    def take(self) -> bool:
        return self.semaphore.acquire(timeout=self.wait)

    def give(self) -> None:
        self.semaphore.release()
