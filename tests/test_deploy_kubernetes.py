"""The Kubernetes manifests and the Cloud Run service, validated without a cluster: every
object against the official JSON schemas (kubernetes-validate), references, security
contexts, probes on real routes and ports, one worker per queue, KEDA's ScaledObjects
against the Redis lists Celery really uses, and Cloud Run's container as a Pod."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from hark.config import Settings
from hark.jobs.routing import QUEUES, parse_queues
from tests.support.deploy import (
    HARK_UID,
    LIVE,
    READY,
    configmap_env,
    hark_cli,
    image_is_pinned,
    k8s_documents,
    k8s_objects,
    load_cloudrun,
    pod_spec,
)

NAMESPACE = "hark"
# The oldest Kubernetes release we claim to support and the newest one with schemas.
K8S_VERSIONS = ("1.29.0", "1.37.0")


def health_routes() -> set[str]:
    from hark.health.endpoints import router

    return {getattr(route, "path", "") for route in router.routes}


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
