"""`hark live --server URL`: the stream sent to a Hark server's `WS /api/v1/live`, its
messages shown as they come back (and, with `--save`, the stream kept there as a job)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from hark.pipeline.transcript import Segment, Word


class ServerError(Exception):
    """The server refused or ended the stream (its error code and message), or could
    not be reached."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class StreamResult:
    finals: list[Segment] = field(default_factory=list)
    model: str = ""
    language: str | None = None
    seconds: float = 0.0
    job_id: str | None = None


def live_url(server: str, query: dict[str, str]) -> str:
    """`http(s)://host[/prefix]` → `ws(s)://host[/prefix]/api/v1/live?query`."""
    parts = urlsplit(server)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ServerError("INVALID_OPTION", f"--server must be an http(s) URL, not {server!r}")
    path = parts.path.rstrip("/") + "/api/v1/live"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def segment_from_body(body: dict[str, Any]) -> Segment:
    return Segment(id=int(body["id"]), start=float(body["start"]), end=float(body["end"]),
                   text=str(body["text"]), confidence=body.get("confidence"),
                   words=[Word(word=w["word"], start=w["start"], end=w["end"],
                               probability=w.get("probability"),
                               leading_space=w.get("leading_space", True))
                          for w in body.get("words", [])])


def stream(server: str, key: str | None, frames: Iterable[bytes], query: dict[str, str],
           on_final: Callable[[Segment], None],
           on_partial: Callable[[str], None]) -> StreamResult:
    """Send `frames`, then stop; show what comes back; what the server said at the end."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = live_url(server, query)
    result = StreamResult()
    failure: list[ServerError] = []
    try:
        with connect(url, additional_headers=headers, open_timeout=30,
                     max_size=1 << 22) as socket:
            receiver = threading.Thread(target=_receive, args=(socket, result, failure,
                                                               on_final, on_partial),
                                        name="hark-live-receive", daemon=True)
            receiver.start()
            try:
                for frame in frames:
                    socket.send(frame)
                socket.send(json.dumps({"type": "stop"}))
            except ConnectionClosed:
                pass  # the server ended the stream: its reason arrives in the receiver
            receiver.join()
    except (OSError, InvalidStatus, InvalidURI, TimeoutError) as exc:
        raise ServerError("SERVER_UNREACHABLE", f"cannot open a live stream at {server}: "
                                                f"{exc}") from exc
    if failure:
        raise failure[0]
    if socket.close_code != 1000:
        code = "UNAUTHORIZED" if socket.close_code == 4401 else "STREAM_ENDED"
        raise ServerError(code, f"the server ended the stream: {socket.close_reason or '-'} "
                                f"(close code {socket.close_code})")
    return result


def _receive(socket: Any, result: StreamResult, failure: list[ServerError],
             on_final: Callable[[Segment], None], on_partial: Callable[[str], None]) -> None:
    """Show the server's messages as they come; fill in `result` and `failure`."""
    from websockets.exceptions import ConnectionClosed

    try:
        for raw in socket:
            body = json.loads(raw)
            kind = body.get("type")
            if kind == "ready":
                result.model, result.language = body.get("model", ""), body.get("language")
            elif kind == "final":
                segment = segment_from_body(body["segment"])
                result.finals.append(segment)
                on_final(segment)
            elif kind == "partial":
                on_partial(body["segment"]["text"])
            elif kind == "error":
                failure.append(ServerError(body["error_code"], body["message"]))
            elif kind == "closed":
                result.seconds, result.job_id = body["seconds"], body.get("job_id")
    except ConnectionClosed:
        pass
