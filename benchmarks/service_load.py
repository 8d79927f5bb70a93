"""Load for `benchmarks.service`: keep-alive GETs, a large upload body, SSE subscribers.

    python -m benchmarks.service_load get --port 8000 --path /api/v1/jobs/ID [--seconds 10]

Status GETs are sent by `wrk` when it is installed. The `get` command is the fallback:
it runs in its own process (so its CPU is not the benchmark's) and prints one JSON
line; requests are written and parsed by hand over asyncio streams, since an HTTP
client library would spend more CPU per request than the server does.

`Subscribers` opens many Server-Sent Events streams with bare asyncio protocols and
stamps each event with the time its bytes reached the protocol. Per event, a stream
does no more than a byte search, so the client's own work (all streams share one
event loop) inflates the measured spread as little as it can; what remains is in it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).parents[1]
MIB = 1024 * 1024
TERMINAL_MARKERS = (b'"type": "completed"', b'"type": "failed"', b'"type": "canceled"')


def percentiles(values: list[float], *qs: float) -> list[float]:
    if not values:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.percentile(np.asarray(values), qs)]


# --- keep-alive GET load -------------------------------------------------------------

def _request(host: str, port: int, path: str, headers: list[str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def _get_loop(host: str, port: int, request: bytes, deadline: float,
                    latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(int(head[9:12]))
    finally:
        writer.close()


async def get_load(host: str, port: int, path: str, connections: int, seconds: float,
                   headers: list[str]) -> dict[str, Any]:
    request = _request(host, port, path, headers)
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(*(_get_loop(host, port, request, started + seconds, latencies, errors)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - started
    p50, p99 = percentiles(latencies, 50, 99)
    return {"client": "python asyncio (separate process)", "requests": len(latencies),
            "non_2xx": len(errors), "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": p50 * 1000, "p99_ms": p99 * 1000}


def has_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[match[2]]


def run_wrk(url: str, headers: list[str], connections: int, seconds: float) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    requests = re.search(r"^\s+(\d+) requests in", out, re.MULTILINE)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    if requests is None or rps is None or len(latency) != 2:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"client": "wrk -t1", "requests": int(requests[1]), "rps": float(rps[1]),
            "non_2xx": int(non_2xx[1]) if non_2xx else 0,
            "p50_ms": wrk_ms(latency["50"]), "p99_ms": wrk_ms(latency["99"])}


def run_python(port: int, path: str, headers: list[str], connections: int,
               seconds: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.service_load", "get", "--port", str(port),
               "--path", path, "--connections", str(connections), "--seconds", str(seconds)]
    for header in headers:
        command += ["--header", header]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- a large upload body -----------------------------------------------------------

def wav_header(data_bytes: int, rate: int = 48_000, channels: int = 2) -> bytes:
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16,
                       1, channels, rate, rate * channels * 2, channels * 2, 16, b"data",
                       data_bytes)


def multipart_wav(data_bytes: int, boundary: str) -> tuple[int, Iterator[bytes]]:
    """A form with one WAV file part (48 kHz stereo, faint noise), made while sent."""
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
            f"pocketsphinx\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"large.wav\"\r\nContent-Type: audio/wav\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = np.random.default_rng(4).normal(0, 30, MIB // 2).astype(np.int16).tobytes()

    def chunks() -> Iterator[bytes]:
        yield head + wav_header(data_bytes)
        left = data_bytes
        while left > 0:
            piece = block if left >= len(block) else block[:left]
            left -= len(piece)
            yield piece
        yield tail

    return len(head) + 44 + data_bytes + len(tail), chunks()


# --- SSE subscribers -----------------------------------------------------------------

class _SseProtocol(asyncio.Protocol):
    """One SSE stream; keeps (receive time, raw JSON) of every `data:` line."""

    def __init__(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.events: list[tuple[float, bytes]] = []
        self.buffer = b""
        self.first: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.status_ok: bool | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.status_ok is None:
            self.status_ok = data.startswith(b"HTTP/1.1 200")
            if not self.status_ok:
                self._finish()
                return
        self.buffer += data
        # Events end with a blank line; the chunked-encoding size lines that sit
        # between them are skipped since only what follows "data: " is kept.
        while (end := self.buffer.find(b"\n\n")) >= 0:
            piece, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            start = piece.find(b"data: ")
            if start < 0:  # a keep-alive comment
                continue
            payload = piece[start + 6:]
            self.events.append((now, payload))
            if not self.first.done():
                self.first.set_result(None)
            if any(marker in payload for marker in TERMINAL_MARKERS):
                self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        for future in (self.first, self.done):
            if not future.done():
                future.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def parsed(self, after: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [(t, json.loads(raw)) for t, raw in self.events if t >= after]


@dataclass
class Subscribers:
    host: str
    port: int
    job_id: str
    headers: list[str] = field(default_factory=list)
    streams: list[_SseProtocol] = field(default_factory=list)

    async def connect(self, count: int, batch: int = 50, timeout: float = 60.0) -> float:
        """Open `count` streams and wait for each one's first (current-state) event."""
        loop = asyncio.get_running_loop()
        request = _request(self.host, self.port, f"/api/v1/jobs/{self.job_id}/events",
                           ["Accept: text/event-stream", *self.headers])
        started = time.perf_counter()
        for offset in range(0, count, batch):
            opened = await asyncio.gather(*(
                loop.create_connection(lambda: _SseProtocol(request), self.host, self.port)
                for _ in range(min(batch, count - offset))))
            self.streams += [protocol for _, protocol in opened]
        await asyncio.wait_for(asyncio.gather(*(s.first for s in self.streams)), timeout)
        elapsed = time.perf_counter() - started
        bad = [s for s in self.streams if not s.events]
        if bad:
            raise RuntimeError(f"{len(bad)} of {count} event streams got no first event")
        return elapsed

    async def wait_done(self, timeout: float) -> int:
        """Wait for every stream's terminal event; returns how many did not end in time."""
        pending = [s.done for s in self.streams if not s.done.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            return len(still)
        return 0

    def close(self) -> None:
        for stream in self.streams:
            stream._finish()


def delivery_spread(streams: list[_SseProtocol], after: float) -> dict[str, Any]:
    """Per event, each subscriber's receive time minus the first subscriber's.

    An event is told apart by its JSON and by how many identical ones came before it
    on the same stream, so repeated progress values do not get mixed up.
    """
    arrivals: dict[tuple[str, int], list[float]] = {}
    for stream in streams:
        seen: dict[str, int] = {}
        for received, event in stream.parsed(after):
            key = json.dumps(event, sort_keys=True)
            seen[key] = seen.get(key, 0) + 1
            arrivals.setdefault((key, seen[key]), []).append(received)
    spread = [t - min(times) for times in arrivals.values() for t in times]
    complete = sum(1 for times in arrivals.values() if len(times) == len(streams))
    p50, p99 = percentiles(spread, 50, 99)
    return {"events": len(arrivals), "events_seen_by_all": complete,
            "deliveries": len(spread), "p50_ms": p50 * 1000, "p99_ms": p99 * 1000,
            "max_ms": max(spread, default=float("nan")) * 1000}


async def _submit(client: httpx.AsyncClient, media: bytes, name: str) -> str:
    response = await client.post("/api/v1/jobs/upload", files={"file": (name, media)},
                                 data={"model": "pocketsphinx"})
    response.raise_for_status()
    job_id: str = response.json()["id"]
    return job_id


async def _wait_status(client: httpx.AsyncClient, job_id: str, status: str,
                       timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        response = await client.get(f"/api/v1/jobs/{job_id}")
        response.raise_for_status()
        if response.json()["status"] == status:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"job {job_id} did not become {status} within {timeout:.0f} s")


async def events_benchmark(host: str, port: int, headers: dict[str, str], blocker: bytes,
                           media: bytes, count: int) -> dict[str, Any]:
    """`count` subscribers to one job, twice.

    A long `blocker` job occupies the only worker so that the watched jobs wait in the
    queue while their subscribers connect. First a queued job is canceled by us: its
    `canceled` event is timed from our DELETE. Then the blocker is canceled, the
    watched job runs, and each worker event is timed against the first subscriber
    that received it.
    """
    raw_headers = [f"{name}: {value}" for name, value in headers.items()]
    result: dict[str, Any] = {"subscribers": count}
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", headers=headers,
                                 timeout=120) as client:
        blocker_id = await _submit(client, blocker, "blocker.wav")
        await _wait_status(client, blocker_id, "running", 60)

        target = await _submit(client, media, "canceled.ogg")
        subscribers = Subscribers(host, port, target, raw_headers)
        try:
            result["connect_s"] = await subscribers.connect(count)
            await asyncio.sleep(0.5)
            sent = time.perf_counter()
            response = await client.delete(f"/api/v1/jobs/{target}")
            answered = time.perf_counter()
            response.raise_for_status()
            missing = await subscribers.wait_done(30)
            latencies = [t - sent for stream in subscribers.streams
                         for t, event in stream.parsed(sent) if event["type"] == "canceled"]
        finally:
            subscribers.close()
        p50, p99 = percentiles(latencies, 50, 99)
        result["cancel"] = {"received": len(latencies), "not_ended": missing,
                            "delete_ms": (answered - sent) * 1000, "p50_ms": p50 * 1000,
                            "p99_ms": p99 * 1000,
                            "max_ms": max(latencies, default=float("nan")) * 1000}

        target = await _submit(client, media, "watched.ogg")
        subscribers = Subscribers(host, port, target, raw_headers)
        try:
            await subscribers.connect(count)
            await asyncio.sleep(0.5)
            released = time.perf_counter()
            (await client.delete(f"/api/v1/jobs/{blocker_id}")).raise_for_status()
            missing = await subscribers.wait_done(180)
            result["run"] = {**delivery_spread(subscribers.streams, released),
                             "not_ended": missing}
        finally:
            subscribers.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get", help="keep-alive GET load; prints one JSON line")
    get.add_argument("--host", default="127.0.0.1")
    get.add_argument("--port", type=int, required=True)
    get.add_argument("--path", required=True)
    get.add_argument("--connections", type=int, default=64)
    get.add_argument("--seconds", type=float, default=10.0)
    get.add_argument("--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args()
    result = asyncio.run(get_load(args.host, args.port, args.path, args.connections,
                                  args.seconds, args.header))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
