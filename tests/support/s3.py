"""A real S3-protocol server for tests: moto's server mode on a free local port.

    with MotoS3Server() as server:
        server.create_bucket("hark-test")
        storage = S3Storage("hark-test", "prefix", endpoint_url=server.endpoint_url)

moto keeps its state in the process, shared by every server it runs: use a fresh
bucket (or key prefix) per test module. moto does not check request signatures, so
a presigned URL is accepted whatever its signed headers say (real S3 and MinIO check).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pytest

# moto needs credentials to exist, not to be right; boto3 reads them when a client is
# made, so they must be in the environment before any client is created.
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoS3Server:
    """moto's threaded server bound to 127.0.0.1 on a port the OS picks."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint_url = ""

    def start(self) -> MotoS3Server:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self) -> Any:
        """A plain boto3 client for the server, for setting up and inspecting state."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def __enter__(self) -> MotoS3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def require_s3_modules() -> None:
    """Skip without boto3 and moto, or fail when HARK_REQUIRE_SERVICES=1 (CI), as for
    the other services."""
    for module, hint in (("boto3", "pip install 'hark[s3]'"), ("moto", "pip install moto")):
        if importlib.util.find_spec(module) is None:
            reason = f"{module} is not installed ({hint})"
            if os.environ.get("HARK_REQUIRE_SERVICES") == "1":
                pytest.fail(f"{reason}; HARK_REQUIRE_SERVICES=1 requires it")
            pytest.skip(reason)


def s3_server_fixture() -> Iterator[MotoS3Server]:
    """Body of a (module- or session-scoped) fixture: credentials set, server running.

    Credentials go into os.environ for the fixture's lifetime (a module-scoped fixture
    cannot use the function-scoped `monkeypatch`) and are restored afterwards.
    """
    require_s3_modules()
    patch = pytest.MonkeyPatch()
    for name, value in TEST_CREDENTIALS.items():
        patch.setenv(name, value)
    # A session token or profile from the developer's environment would be sent along.
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        patch.delenv(name, raising=False)
    try:
        with MotoS3Server() as server:
            yield server
    finally:
        patch.undo()


__all__ = ["TEST_CREDENTIALS", "MotoS3Server", "s3_server_fixture"]
