"""``assonant-ioc page``: serve the page (static files, Plotly's script and the catalog's
address) on 127.0.0.1.

    assonant-ioc page --catalog-url http://127.0.0.1:8000 [--port 8080] [--host 127.0.0.1]

The browser reads the catalog itself (tiled's HTTP API, with the API key the person types):
start the catalog's server with ``--allow-origin`` naming this page's address. Every answer
carries a Content-Security-Policy: scripts only from this page's own files (no inline
script, no ``eval``), requests only to this page and the catalog, no frames around it.
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import sys
from importlib import resources
from pathlib import Path

from assonant_ioc.arguments import Parser

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")


def plotly_script() -> Path:
    """Plotly's JavaScript as the ``plotly`` Python package ships it."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def policy(catalog_url: str) -> str:
    """The page's Content-Security-Policy: what its scripts may load and reach."""
    from urllib.parse import urlsplit

    parts = urlsplit(catalog_url)
    catalog = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            # Plotly sets styles on the elements it draws (no script can come in that way)
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            f"connect-src 'self' {catalog}".strip(),
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ]
    )


class _Handler(http.server.SimpleHTTPRequestHandler):
    catalog_url = ""

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", policy(self.catalog_url))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/config.json":
            self._send(json.dumps({"catalog": self.catalog_url}).encode(), "application/json")
        elif path == "/plotly.min.js":
            self._send(plotly_script().read_bytes(), "text/javascript")
        else:
            super().do_GET()

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), format % args)


def serve(host: str, port: int, catalog_url: str) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_Handler, directory=str(resources.files(__package__) / "static"))
    _Handler.catalog_url = catalog_url.rstrip("/")
    return http.server.ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="assonant-ioc page", description=__doc__)
    parser.add_argument("--catalog-url", required=True, help="tiled's server, http://host:port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = serve(args.host, args.port, args.catalog_url)
    except OSError as err:
        sys.stderr.write(f"assonant-ioc page: {err}\n")
        return 2
    host, port = str(server.server_address[0]), int(server.server_address[1])
    sys.stdout.write(f"page on http://{host}:{port}/ (catalog {args.catalog_url})\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
