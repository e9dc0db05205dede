"""What the dashboard's server refuses before any of it runs: a Host it was not started
for, and a request body too large to be one of its own.

The dashboard has no login: on localhost, the Host check is what keeps a web page from
reaching it by DNS rebinding (a name of the attacker's that resolves to 127.0.0.1 sends
``Host: thatname``); the body limit keeps one POST from taking the server's memory.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable

from flask import Flask
from werkzeug.exceptions import Forbidden, RequestEntityTooLarge

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_HOST = "*"

# The largest body the page sends is the run's list of recorded steps (the "records"
# store, State of the slider callbacks): under 9 bytes a step, so a run recorded at every
# step of 100 full-MNIST epochs (187,500 records) posts 1.6 MB. 4 MiB leaves room for that
# and more; parsing 4 MiB of numbers peaks at about 16 MB, where a 200 MB body took 580 MB.
MAX_BODY_BYTES = 4 * 2**20

_HOST = re.compile(
    r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.-]+))(?::(?P<port>[0-9]{1,5}))?"
)


def parse_host(value: str | None) -> tuple[str, int] | None:
    """``"Name:8050"`` -> ``("name", 8050)``, ``"[::1]"`` -> ``("::1", 80)``; None if it is
    not a host (and optional port) at all."""
    match = _HOST.fullmatch((value or "").lower())
    if match is None:
        return None
    return match["ipv6"] or match["name"], int(match["port"] or 80)


class Guard:
    """WSGI middleware: a request whose Host is not one of ``names`` (and, if ``port`` is
    given, that port; ``names=None``: any host) gets 403 before the app sees it; a body
    without Content-Length (chunked) is read up to ``max_body`` bytes, and beyond that
    gets 413 (Flask's ``MAX_CONTENT_LENGTH`` refuses a declared length before reading,
    but would silently cut a chunked body at the limit)."""

    def __init__(self, app, names: Iterable[str] | None, port: int | None, max_body: int):
        self.app = app
        self.names = None if names is None else {name.lower().strip("[]") for name in names}
        self.port = port
        self.max_body = max_body

    def allows(self, header: str | None) -> bool:
        if self.names is None:
            return True
        host = parse_host(header)
        return host is not None and host[0] in self.names and self.port in (None, host[1])

    def __call__(self, environ, start_response):
        header = environ.get("HTTP_HOST")
        if not self.allows(header):
            name = (parse_host(header) or (header or "(none)",))[0]
            refusal = Forbidden(
                f"This dashboard does not answer to the host {name!r}. If that is how you"
                f" reach it, start it with --allow-host {name} (or allow_hosts=[{name!r}]"
                " from Python)."
            )
            return refusal(environ, start_response)
        if environ.get("wsgi.input_terminated") and not environ.get("CONTENT_LENGTH"):
            body = read_at_most(environ["wsgi.input"], self.max_body + 1)
            if len(body) > self.max_body:
                return RequestEntityTooLarge()(environ, start_response)
            environ = {**environ, "wsgi.input": io.BytesIO(body)}
            environ["CONTENT_LENGTH"] = str(len(body))
            del environ["wsgi.input_terminated"]
        return self.app(environ, start_response)


def read_at_most(stream, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``stream`` (reads may come back short)."""
    parts, size = [], 0
    while size < limit:
        part = stream.read(min(limit - size, 2**16))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def protect(server: Flask, hosts: Iterable[str] = (), port: int | None = None) -> None:
    """Cap request bodies (413) and accept only the loopback names and ``hosts`` on
    ``port`` (any port if None; ``"*"`` in ``hosts`` accepts every host)."""
    server.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    hosts = list(hosts)
    names = None if ANY_HOST in hosts else [*LOOPBACK_NAMES, *hosts]
    server.wsgi_app = Guard(server.wsgi_app, names, port, MAX_BODY_BYTES)
