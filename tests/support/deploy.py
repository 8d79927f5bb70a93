"""Shared helpers for the deployment tests: the files' paths, loaders for Compose,
Kubernetes and Cloud Run, a Dockerfile parser that reads stages the way Docker does, and
`hark_cli`, which parses a `hark …` command with Hark's own command line."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
CLOUDRUN = DEPLOY / "cloudrun" / "service.yaml"
LIVE, READY = "/health/live", "/health/ready"
HARK_UID = 10001


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
