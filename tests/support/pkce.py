"""PKCE (RFC 7636) enforced in front of the test OpenID provider, which does not check
it itself: the token endpoint answers only a code whose authorization request carried
an S256 `code_challenge`, exchanged with the `code_verifier` it was made from. A client
that sends no verifier, or the wrong one, gets `invalid_grant`, as from a provider
that requires PKCE."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from werkzeug.serving import make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class RequirePkce:
    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.challenges: dict[str, str] = {}  # code → the challenge it was issued for
        self.refused = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path == "/oauth2/token" and method == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            with self._lock:
                challenge = self.challenges.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if form.get("grant_type") == "authorization_code" and (
                    challenge is None or not verifier or s256(verifier) != challenge):
                with self._lock:
                    self.refused += 1
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [json.dumps({"error": "invalid_grant",
                                    "error_description": "PKCE verification failed"}).encode()]
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        if path == "/oauth2/authorize":
            query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            challenge = query.get("code_challenge") \
                if query.get("code_challenge_method") == "S256" else None

            def remember(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
                location = dict(headers).get("Location", "")
                code = parse_qs(urlsplit(location).query).get("code", [None])[0]
                if code and challenge:
                    with self._lock:
                        self.challenges[code] = challenge
                return start_response(status, headers, *rest)

            return self.app(environ, remember)
        return self.app(environ, start_response)


@contextmanager
def serve_in_thread(app: WsgiApp) -> Iterator[int]:
    """`app` served on localhost; yields its port."""
    server = make_server("localhost", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
