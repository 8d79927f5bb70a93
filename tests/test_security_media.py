"""A job's recording is served as a recording, never as a page, and only to a key in
a header or a signed, expiring link: never to a key in the URL.

The uploads are real recordings that pass the intake probe under names (and
declared types) of pages, including an HTML page with MP3 frames after it, which
FFmpeg reads as MP3. One app without workers serves the module: a queued job's
recording is already stored.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from hark.audit.actor import COMMAND_LINE
from hark.keys.service import revoke_key
from hark.pipeline.audio import SAMPLE_RATE
from hark.transcripts.media import sniff_media_type
from tests.support.common import wait_for
from tests.support.service import (
    JOBS,
    Service,
    assert_error,
    bearer,
    fixture_bytes,
    serve,
    service_fixture,
    service_settings,
    sine_wav,
    video_without_audio,
)

PAGE_TYPES = ("text/html", "image/svg+xml", "application/xhtml+xml", "text/xml")


def encoded(container: str, codec: str, rate: int = SAMPLE_RATE,
            options: dict[str, str] | None = None) -> bytes:
    """Half a second of a tone, encoded by FFmpeg into `container`."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container, options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate // 2) / rate)
        frame = av.AudioFrame.from_ndarray(tone.astype(np.float32).reshape(1, -1),
                                           format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return buffer.getvalue()


def bare_mp3() -> bytes:
    """MP3 frames from the first byte: no ID3 tag, no Xing header."""
    return encoded("mp3", "libmp3lame", options={"id3v2_version": "0", "write_xing": "0"})


HTML_THEN_MP3 = b"<html><body><script>alert(document.domain)</script></body></html>\n"


svc = service_fixture("media", workers=False, allow_anonymous=False)


@pytest.fixture(scope="module")
def key(svc: Service) -> str:
    return svc.create_key("media")


def link(svc: Service, key: str, job_id: str) -> str:
    response = svc.client.get(f"{JOBS}/{job_id}/media/link", headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["expires_at"].endswith("Z")
    url: str = body["url"]
    assert key not in url
    return url


def assert_not_a_page(response: Any, served_type: str, saved_as: str) -> None:
    assert response.status_code in (200, 206), response.text
    assert response.headers["content-type"] == served_type
    assert response.headers["x-content-type-options"] == "nosniff"
    # Opened directly, it downloads under a name with the served type's extension.
    assert response.headers["content-disposition"] == f"attachment; filename*=UTF-8''{saved_as}"
    policy = response.headers["content-security-policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy


@pytest.mark.parametrize(("data", "name", "declared", "served", "saved_as"), [
    (sine_wav(0.5), "x.html", "text/html", "audio/wav", "x.wav"),
    (sine_wav(0.5), "x.svg", "image/svg+xml", "audio/wav", "x.wav"),
    (sine_wav(0.5), "page", "application/xhtml+xml", "audio/wav", "page.wav"),
    (fixture_bytes(), "x.xml", "text/xml", "audio/ogg", "x.ogg"),
    (HTML_THEN_MP3 + bare_mp3(), "x.html", "text/html", "application/octet-stream", "x.bin"),
], ids=["wav-as-html", "wav-as-svg", "wav-as-xhtml", "ogg-as-xml", "html-then-mp3"])
def test_an_upload_named_as_a_page_is_never_served_as_one(
        svc: Service, key: str, data: bytes, name: str, declared: str, served: str,
        saved_as: str) -> None:
    job = svc.submit(data, name, headers=bearer(key), content_type=declared)
    url = f"{JOBS}/{job['id']}/media"
    whole = svc.client.get(url, headers=bearer(key))
    assert whole.content == data
    assert_not_a_page(whole, served, saved_as)
    part = svc.client.get(link(svc, key, job["id"]), headers={"Range": "bytes=1-4"})
    assert part.status_code == 206 and part.content == data[1:5]
    assert_not_a_page(part, served, saved_as)
    assert not any(kind in whole.headers["content-type"] for kind in PAGE_TYPES)


def test_the_served_type_is_read_from_the_recording() -> None:
    cases = {
        "audio/wav": sine_wav(0.1), "audio/ogg": fixture_bytes(),
        "audio/flac": encoded("flac", "flac"), "audio/mpeg": encoded("mp3", "libmp3lame"),
        "audio/aac": encoded("adts", "aac"), "audio/mp4": encoded("ipod", "aac"),
        "video/mp4": encoded("mp4", "aac"), "video/quicktime": encoded("mov", "aac"),
        "video/webm": encoded("webm", "libopus", 48000), "audio/aiff": encoded("aiff", "pcm_s16be"),
        "video/x-matroska": video_without_audio(2),
        "application/octet-stream": HTML_THEN_MP3 + bare_mp3(),
    }
    assert bare_mp3()[:1] == b"\xff"
    assert sniff_media_type(bare_mp3()[:64]) == "audio/mpeg"
    for expected, data in cases.items():
        assert sniff_media_type(data[:64]) == expected, expected
    for page in (b"<!doctype html><p>hi", b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                 b"<?xml version='1.0'?><x/>", b"%PDF-1.7", b"", b"\xff"):
        assert sniff_media_type(page) == "application/octet-stream", page


def test_a_key_in_the_url_is_refused_and_never_needed(svc: Service, key: str) -> None:
    job = svc.submit(sine_wav(0.5), "clip.wav", headers=bearer(key))
    url = f"{JOBS}/{job['id']}/media"
    for params in ({"api_key": key}, {"api_key": key, "token": "x"}):
        body = assert_error(svc.client.get(url, params=params), 401, "UNAUTHORIZED",
                            field="api_key")
        assert "/media/link" in body["error"]
    assert_error(svc.client.get(url), 401, "UNAUTHORIZED")
    assert_error(svc.client.get(f"{url}/link"), 401, "UNAUTHORIZED")
    signed = link(svc, key, job["id"])
    assert signed.startswith("http://127.0.0.1/api/v1/jobs/")
    assert svc.client.get(signed).content[:4] == b"RIFF"


def test_a_link_opens_one_recording_and_cannot_be_altered(svc: Service, key: str) -> None:
    first = svc.submit(sine_wav(0.5), "first.wav", headers=bearer(key))
    second = svc.submit(sine_wav(0.5), "second.wav", headers=bearer(key))
    signed = link(svc, key, first["id"])
    token = signed.split("token=", 1)[1]
    for url, reason in (
            (f"{JOBS}/{second['id']}/media?token={token}", "other_job"),
            (f"{JOBS}/{first['id']}/media?token={token[:-2]}xy", "invalid"),
            (f"{JOBS}/{first['id']}/media?token=not-a-token", "invalid"),
            (f"{JOBS}/{first['id']}/media?token=", "invalid")):
        body = assert_error(svc.client.get(url), 401, "MEDIA_LINK_INVALID")
        assert body["details"]["reason"] == reason, url
    # Another tenant's key gets no link to this job, as if it did not exist.
    other = bearer(svc.create_key("other-tenant"))
    assert_error(svc.client.get(f"{JOBS}/{first['id']}/media/link", headers=other), 404,
                 "JOB_NOT_FOUND")
    # A purged recording has no link.
    svc.client.delete(f"{JOBS}/{second['id']}", params={"purge": "true"}, headers=bearer(key))
    assert_error(svc.client.get(f"{JOBS}/{second['id']}/media/link", headers=bearer(key)),
                 410, "JOB_PURGED")


def test_a_link_ends_when_its_key_is_revoked(svc: Service) -> None:
    key = svc.create_key("media", "to-revoke")
    job = svc.submit(sine_wav(0.5), "revoked.wav", headers=bearer(key))
    signed = link(svc, key, job["id"])
    assert svc.client.get(signed).status_code == 200
    with svc.state.db.session(write=True) as session:
        revoke_key(session, key[:12], actor=COMMAND_LINE)
    body = assert_error(svc.client.get(signed), 401, "MEDIA_LINK_INVALID")
    assert body["details"]["reason"] == "revoked"


def test_a_link_expires(tmp_path: Path) -> None:
    settings = service_settings(tmp_path, allow_anonymous=False, media_url_seconds=1)
    with serve(settings, workers=False) as server:
        key = server.create_key("media")
        job = server.submit(sine_wav(0.5), "short.wav", headers=bearer(key))
        signed = link(server, key, job["id"])
        assert server.client.get(signed).status_code == 200
        # A second's link (its timestamp counts whole seconds) stops working soon after.
        wait_for(lambda: server.client.get(signed).status_code != 200, interval=0.2,
                 message="the link still works")
        body = assert_error(server.client.get(signed), 401, "MEDIA_LINK_INVALID")
        assert body["details"]["reason"] == "expired"
        # The secret was made once, private to the server's user.
        secret = settings.data_dir / "media_secret"
        assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text()) >= 32
