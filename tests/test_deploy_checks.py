"""Checks across all the deployment files: every HARK_* variable they use is a Hark
setting with a valid value, the health checks of the Dockerfile, Compose, Kubernetes and
Cloud Run pass against a real `hark serve` (or metrics endpoint) and fail when nothing
answers, and deploy/README.md documents what it should."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hark.config import Settings
from hark.jobs.routing import QUEUES
from tests.support.common import free_port, wait_for
from tests.support.deploy import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    LIVE,
    ROOT,
    compose_hark_services,
    compose_services,
    configmap_env,
    dockerfile_stages,
    healthcheck_command,
    k8s_objects,
    load_cloudrun,
    pod_spec,
    secret_env,
    shipped_stages,
)


def setting_variables() -> set[str]:
    return {f"HARK_{name.upper()}" for name in Settings.model_fields}


def deploy_files() -> list[Path]:
    files = [DOCKERFILE, COMPOSE, *sorted(p for p in DEPLOY.rglob("*") if p.is_file())]
    assert all(p.is_file() for p in files)
    return files




# --- settings used anywhere ------------------------------------------------------------

def test_every_hark_variable_is_a_setting() -> None:
    known = setting_variables()
    unknown: dict[str, set[str]] = {}
    for path in deploy_files():
        for name in set(re.findall(r"\bHARK_[A-Z0-9_]+\b", path.read_text())) - known:
            unknown.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert not unknown, f"not Hark settings (typo, or missing in hark.config): {unknown}"


def environments() -> Iterator[tuple[str, dict[str, str]]]:
    yield "docker-compose.yml", compose_hark_services()["api"]["environment"]
    yield "kubernetes ConfigMap + Secret", {**configmap_env(), **secret_env()}
    env = load_cloudrun()["spec"]["template"]["spec"]["containers"][0]["env"]
    yield "cloudrun", {e["name"]: e["value"] for e in env if "value" in e}
    for name, stage in shipped_stages(dockerfile_stages()).items():
        pairs = re.findall(r"(HARK_\w+)=(\S+)", " ".join(stage.values("ENV")))
        yield f"Dockerfile {name}", dict(pairs)


@pytest.mark.parametrize("source", ["docker-compose.yml", "kubernetes ConfigMap + Secret",
                                    "cloudrun", "Dockerfile runtime", "Dockerfile cuda"])
def test_setting_values_are_valid(source: str, monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    env = dict(environments())[source]
    for name in list(os.environ):
        if name.startswith("HARK_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None)
    if "HARK_DATABASE_URL" in env:
        assert settings.database.startswith("postgresql")


# --- the health checks, run for real ---------------------------------------------------

@pytest.fixture
def hark_api(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """`hark` started with the API Deployment's arguments on a free port; yields the
    port and the environment the health check commands run with."""
    args = pod_spec(k8s_objects("Deployment")["hark-api"])["containers"][0]["args"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARK_")}
    env.update(HARK_DATA_DIR=str(tmp_path / "data"), HARK_PORT=str(port),
               HARK_LOG_FORMAT="console")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "hark", *args], cwd=tmp_path,
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def live() -> bool:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{LIVE}", timeout=1).close()
            except OSError:
                return False
            return True

        wait_for(live, 60, interval=0.1, message="hark serve did not start")
        yield port, env
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_check(command: list[str], env: dict[str, str]) -> int:
    """Run a health check command as the container would, `python` being this one."""
    assert command[0] == "python", command
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True,
                          timeout=30).returncode


def test_health_checks_pass_against_a_real_server(hark_api: tuple[int, dict[str, str]]
                                                  ) -> None:
    port, env = hark_api
    commands = [healthcheck_command(s) for s in shipped_stages(dockerfile_stages()).values()]
    commands.append(compose_services()["api"]["healthcheck"]["test"][1:])
    for command in commands:
        assert run_check(command, env) == 0, command
    container = pod_spec(k8s_objects("Deployment")["hark-api"])["containers"][0]
    cloudrun = load_cloudrun()["spec"]["template"]["spec"]["containers"][0]
    paths = {c[p]["httpGet"]["path"] for c in (container, cloudrun)
             for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in c}
    for path in paths:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            assert reply.status == 200, path
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert b"# TYPE" in reply.read()
    # The same checks fail when nothing answers.
    env = {**env, "HARK_PORT": str(free_port())}
    for command in commands:
        assert run_check(command, env) != 0, command


def test_worker_liveness_checks_the_metrics_port() -> None:
    """The worker checks pass while a Prometheus endpoint answers at /metrics on
    HARK_WORKER_METRICS_PORT, and fail once it is gone."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = generate_latest()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARK_")}
    env["HARK_WORKER_METRICS_PORT"] = str(server.server_address[1])
    commands = [compose_services()["worker-small"]["healthcheck"]["test"][1:]]
    for queue in QUEUES:
        container = pod_spec(k8s_objects("Deployment")[f"hark-worker-{queue}"])["containers"][0]
        commands += [container["livenessProbe"]["exec"]["command"],
                     container["startupProbe"]["exec"]["command"]]
    try:
        for command in commands:
            assert run_check(command, env) == 0, command
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    for command in commands:
        assert run_check(command, env) != 0, command


def test_deploy_readme_documents_the_cuda_target() -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "docker build --target cuda" in readme
    assert "download.pytorch.org/whl/cpu" in readme
    for path in ("docker-compose.yml", "kubernetes/", "cloudrun/service.yaml"):
        assert path in readme, path
    assert "hark.small" in readme
