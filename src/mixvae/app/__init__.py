"""``mixvae serve``: a local web app over a run folder (needs the extra: ``pip install 'mixvae[app]'``).

Pages: Clusters, Expert, Try an image, Map, Outliers, Training (see :mod:`mixvae.app.views`).
Every script and style is served from this package (plotly's script from plotly's own package),
so the app works without the internet. :func:`create_app` builds the Flask app around one
:class:`Explorer`; :func:`make_server` serves it from threads.
"""

from __future__ import annotations

import socket
from pathlib import Path

from flask import Flask, Response, g, jsonify, request, send_file
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server as werkzeug_server

from mixvae.app.explorer import Explorer
from mixvae.app.guard import BodyLimit, Slots, allowed_host, same_origin
from mixvae.app.images import MAX_UPLOAD_BYTES
from mixvae.app.views import pages

__all__ = ["Explorer", "check_address", "create_app", "make_server"]


def _plotly_js() -> Path:
    import plotly  # only to find the script file it ships

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


HEAVY_ENDPOINTS = ("pages.route", "pages.map_points", "pages.export_selection")  # an upload, the map, an export


def create_app(explorer: Explorer, allowed_hosts: tuple[str, ...] = ()) -> Flask:
    """The Flask app over ``explorer`` (shared by every request; its model calls hold its lock).

    Requests must name a loopback address or one of ``allowed_hosts`` in their ``Host`` header and,
    when they POST from a browser, come from the app's own pages (:mod:`mixvae.app.guard`).
    """

    here = Path(__file__).parent
    app = Flask(__name__, static_folder=str(here / "static"), template_folder=str(here / "templates"))
    app.config.update(EXPLORER=explorer, MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES, MAX_FORM_MEMORY_SIZE=MAX_UPLOAD_BYTES)
    app.register_blueprint(pages)
    app.wsgi_app = BodyLimit(app.wsgi_app, MAX_UPLOAD_BYTES)  # type: ignore[method-assign]
    slots = app.extensions["mixvae.slots"] = Slots()  # the tests take them to see a busy app answer

    @app.before_request
    def guard() -> Response | None:
        if not allowed_host(request.host, allowed_hosts):
            return _refusal(403, f"the Host header {request.host!r} names no address of this app "
                                 "(mixvae serve --allow-host NAME allows one)")
        if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(request.headers.get("Origin"),
                                                                                request.host):
            return _refusal(403, "a request from a page of another site is refused")
        if request.endpoint in HEAVY_ENDPOINTS:
            if not slots.take():
                return _refusal(503, "the app is busy with other uploads, maps or exports; try again in a few seconds",
                                {"Retry-After": "5"})
            g.slot = True
        return None

    @app.teardown_request
    def give_back(error: BaseException | None) -> None:
        if g.pop("slot", False):
            slots.give()

    @app.route("/vendor/plotly.min.js")
    def plotly_js() -> Response:
        return send_file(_plotly_js(), mimetype="text/javascript", max_age=86400)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        """Every error is a short message (JSON for the API, text for a page), never a traceback."""
        status = e.code or 500
        message = e.description if status != 413 else f"the request is over the limit of {MAX_UPLOAD_BYTES} bytes"
        if request.path.startswith("/api/"):
            response = jsonify(error=message)
            response.status_code = status
            return response
        return Response(f"{status} {e.name}: {message}\n", status=status, mimetype="text/plain")

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        # plotly's WebGL scatter (the map) compiles its shaders' code with Function: allowed there only
        scripts = "'self' 'unsafe-eval'" if request.path == "/map" else "'self'"
        response.headers["Content-Security-Policy"] = (f"default-src 'self'; script-src {scripts}; "
                                                       "img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'")
        return response

    return app


def _refusal(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A short answer before any view runs: JSON for the API, text for a page."""
    if request.path.startswith("/api/"):
        response = jsonify(error=message)
        response.status_code = status
    else:
        response = Response(f"{status}: {message}\n", status=status, mimetype="text/plain")
    response.headers.update(headers or {})
    return response


def check_address(host: str, port: int) -> None:
    """Raise OSError (address in use, not this machine's, ...) unless a server can listen on host:port."""

    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[:1]:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server sets it
            s.bind(address)


def make_server(app: Flask, host: str = "127.0.0.1", port: int = 8000) -> BaseWSGIServer:
    """A threaded server for ``app`` on host:port (port 0: a free one, see ``server.server_port``);
    OSError when it cannot listen there."""
    check_address(host, port)  # werkzeug would print its own message and exit
    return werkzeug_server(host, port, app, threaded=True)
