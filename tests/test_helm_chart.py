"""The Helm chart (helm/alertbridge), rendered by the real helm.

Each values file in helm/alertbridge/ci/ passes ``helm lint --strict`` and
renders manifests that the Kubernetes API schemas accept (kubernetes-validate,
strict: unknown fields are errors), at the oldest Kubernetes the chart supports
and the newest the package knows. prometheus-operator's ServiceMonitor and
PrometheusRule are CRDs without schemas there, so they are checked by shape.
The rendered config.toml passes ``alertbridge check-config`` with the
environment the Secret gives the pod. values.schema.json rejects wrong types
and unknown keys, and values.yaml documents every key.

helm comes from .ci/install-helm (``make test`` runs it).
"""

from __future__ import annotations

import base64
import functools
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import alertbridge
from tests.harness import require_binary
from tests.helm_cli import CHART, REPO, helm

VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
# Chart.yaml's kubeVersion floor, and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
NAMESPACE = "monitoring"
# What existingSecret-values.yaml's Secret (made outside the chart) would hold.
EXISTING_SECRET_ENV = {"WECOM_OPS_SECRET": "existing-app-secret"}


@functools.cache
def _render(values: tuple[str, ...], sets: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    args = ["template", "r", str(CHART), "--namespace", NAMESPACE]
    for path in values:
        args += ["--values", path]
    for assignment in sets:
        args += ["--set", assignment]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(values: Path | None = None, *sets: str) -> list[dict[str, Any]]:
    """`helm template` of the chart with a values file and --set assignments."""
    return list(_render((str(values),) if values else (), sets))


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [
        d for d in docs if d["kind"] == kind and "helm.sh/hook" not in d["metadata"].get("annotations", {})
    ]
    return doc


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def values_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


# -- lint and Kubernetes schemas -------------------------------------------------


@pytest.mark.parametrize("values", VALUES_FILES, ids=values_id)
def test_helm_lint_strict(values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "--values", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUES_FILES, ids=values_id)
def test_manifests_match_the_kubernetes_schemas(values: Path) -> None:
    problems = schema_problems(render(values))
    assert not problems, "\n".join(problems)


def schema_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every way the rendered (non-CRD) manifests break the Kubernetes schemas."""
    problems = []
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                problems.append(
                    f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}) at {where}: {exc.message}"
                )
    return problems


def test_the_readme_values_render_validate_and_pass_check_config(tmp_path: Path) -> None:
    """What a new user copies from the README: it installs, and its config starts."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    values = tmp_path / "alertbridge-values.yaml"
    values.write_text(readme_helm_values(), encoding="utf-8")
    docs = render(values)
    assert not schema_problems(docs)
    assert {"Deployment", "Service", "ConfigMap", "Ingress", "ServiceMonitor", "PrometheusRule"} <= kinds(
        docs
    )
    # The Secret the README tells users to create holds exactly what the config refers to.
    created = set(re.findall(r"--from-literal=([A-Z_]+)=", readme))
    config = one(docs, "ConfigMap")["data"]["config.toml"]
    assert created == set(re.findall(r"\$\{([A-Z_]+)\}", config))
    path = tmp_path / "config.toml"
    path.write_text(config, encoding="utf-8")
    env = {name: "CallbackToken123" if "TOKEN" in name else "x" * 20 for name in created}
    env["WECOM_OPS_AES_KEY"] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    result = subprocess.run(
        [sys.executable, "-m", "alertbridge", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], **env},
    )
    assert result.returncode == 0, result.stderr + config


def readme_helm_values() -> str:
    """The values block the README tells new users to write (alertbridge-values.yaml)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block: str = readme.split("<!-- readme-helm-values:", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    return block


def make_image(*assignments: str) -> str:
    """The command `make image` would run (make -n: docker is not needed)."""
    result = subprocess.run(
        [require_binary("make"), "--no-print-directory", "-n", "image", *assignments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_make_image_builds_the_image_the_chart_deploys() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    # The chart's appVersion is alertbridge's version: the image tag is both.
    assert chart["appVersion"] == alertbridge.__version__
    default_image = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert default_image == f"{values['image']['repository']}:{chart['appVersion']}"
    assert make_image() == f"docker build -t {default_image} ."


def test_readme_pushes_the_image_its_values_deploy(tmp_path: Path) -> None:
    """The README's build-and-push steps and its values name one image."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = readme.split("<!-- readme-image-push:", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    make_line, push_line = commands.strip().splitlines()
    repository = re.fullmatch(r"make image IMAGE_REPOSITORY=(\S+)", make_line)
    assert repository, make_line
    built = (
        make_image(f"IMAGE_REPOSITORY={repository[1]}").removeprefix("docker build -t ").removesuffix(" .")
    )
    assert push_line == f"docker push {built}"
    # The chart's own README gives the same steps and the same repository.
    chart_readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert commands in chart_readme
    assert f"repository: {repository[1]} " in chart_readme

    values = tmp_path / "alertbridge-values.yaml"
    values.write_text(readme_helm_values(), encoding="utf-8")
    assert yaml.safe_load(readme_helm_values())["image"]["repository"] == repository[1]
    container = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == built


def test_monitoring_objects_carry_the_kube_prometheus_stack_release_label(tmp_path: Path) -> None:
    """kube-prometheus-stack's Prometheus selects `release: <its release>`; without it they never load."""
    defaults = render(None, "serviceMonitor.enabled=true", "prometheusRule.enabled=true")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert one(defaults, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind

    values = tmp_path / "alertbridge-values.yaml"
    values.write_text(readme_helm_values(), encoding="utf-8")
    docs = render(values)
    # The release the README's own silencer URL points at: <release>-alertmanager.
    silencer_url = one(docs, "ConfigMap")["data"]["config.toml"].split("http://", 1)[1]
    kube_prometheus_stack = silencer_url.split("-alertmanager.", 1)[0]
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert one(docs, kind)["metadata"]["labels"]["release"] == kube_prometheus_stack, kind

    # Another kube-prometheus-stack release name replaces the default; null drops it.
    other = render(None, "serviceMonitor.enabled=true", "serviceMonitor.labels.release=monitoring")
    assert one(other, "ServiceMonitor")["metadata"]["labels"]["release"] == "monitoring"
    dropped = render(None, "prometheusRule.enabled=true", "prometheusRule.labels.release=null")
    assert "release" not in one(dropped, "PrometheusRule")["metadata"]["labels"]


def test_crd_resources_have_the_operator_shape() -> None:
    docs = render(CHART / "ci" / "full-values.yaml")
    service = one(docs, "Service")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]

    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "AlertbridgeDeliveryFailing",
        "AlertbridgeDeadLetters",
        "AlertbridgeOutboxStuck",
        "AlertbridgeCallbackRejected",
        "AlertbridgeDown",  # full-values.yaml's additionalRules
    }
    exprs = " ".join(r["expr"] for r in group["rules"])
    for metric in (
        "alertbridge_messages_sent_total",
        "alertbridge_outbox_dead_letters",
        "alertbridge_outbox_oldest_pending_age_seconds",
        "alertbridge_callback_requests_total",
    ):
        assert metric in exprs
    for name, alert in alerts.items():
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        if name != "AlertbridgeDown":
            # Scoped to this release's scrape job (the Service name) and labelled as asked.
            assert f'job="{service["metadata"]["name"]}"' in alert["expr"], name
            assert alert["labels"]["team"] == "sre", name
            assert "{{ $labels.namespace }}" in alert["annotations"]["description"], name


# -- the config --------------------------------------------------------------------


def pod_environment(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The variables the pod gets from the chart's Secret and `env` (valueFrom: a stand-in)."""
    env: dict[str, str] = {}
    secrets = [d for d in docs if d["kind"] == "Secret"]
    for secret in secrets:
        env.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", f"stand-in-for-{var['name'].lower()}")
    if not secrets and container.get("envFrom"):
        env.update(EXISTING_SECRET_ENV)
    return env


@pytest.mark.parametrize("values", VALUES_FILES, ids=values_id)
def test_rendered_config_passes_check_config(values: Path, tmp_path: Path) -> None:
    docs = render(values)
    config = tmp_path / "config.toml"
    config.write_text(one(docs, "ConfigMap")["data"]["config.toml"], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "alertbridge", "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], **pod_environment(docs)},
    )
    assert result.returncode == 0, result.stderr + config.read_text()


def test_config_numbers_stay_integers() -> None:
    toml = one(render(CHART / "ci" / "full-values.yaml"), "ConfigMap")["data"]["config.toml"]
    config = tomllib.loads(toml)
    assert config["wecom"]["apps"]["ops"]["agent_id"] == 1000002
    assert config["server"]["max_body_bytes"] == 2097152
    assert "e+" not in toml


def test_store_lives_on_the_data_volume() -> None:
    docs = render()
    config = tomllib.loads(one(docs, "ConfigMap")["data"]["config.toml"])
    assert config["store"]["url"].startswith("sqlite:////data/")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]


def test_a_missing_secret_fails_the_render() -> None:
    result = helm(
        "template", "r", str(CHART), "--set-string", "config.webhook_auth.bearer_token=${NOT_PROVIDED}"
    )
    assert result.returncode != 0
    assert (
        "config refers to ${NOT_PROVIDED}, but neither `secrets` nor `env` sets NOT_PROVIDED" in result.stderr
    )


# -- the Deployment and friends ------------------------------------------------------


def test_defaults() -> None:
    docs = render()
    assert kinds(docs) == {
        "ServiceAccount",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Service",
        "Deployment",
        "Pod",
    }
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/alertbridge/alertbridge:0.1.0"
    assert container["args"] == ["serve", "-c", "/etc/alertbridge/config.toml"]
    assert "envFrom" not in container  # no secrets, no Secret
    hardened = container["securityContext"]
    assert hardened["readOnlyRootFilesystem"] is True
    assert hardened["allowPrivilegeEscalation"] is False
    assert hardened["capabilities"] == {"drop": ["ALL"]}
    assert hardened["seccompProfile"] == {"type": "RuntimeDefault"}
    assert isinstance(hardened["runAsUser"], int)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert (
        volumes["data"]["persistentVolumeClaim"]["claimName"]
        == one(docs, "PersistentVolumeClaim")["metadata"]["name"]
    )
    assert one(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_container_port_follows_the_listen_address() -> None:
    docs = render(CHART / "ci" / "full-values.yaml")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == 9095
    (port,) = one(docs, "Service")["spec"]["ports"]
    assert port == {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}


def test_without_persistence_data_is_an_empty_dir() -> None:
    docs = render(None, "persistence.enabled=false")
    assert "PersistentVolumeClaim" not in kinds(docs)
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_secrets_reach_the_container_as_environment() -> None:
    docs = render(CHART / "ci" / "robot-values.yaml")
    secret = one(docs, "Secret")
    assert set(secret["data"]) == {"WECOM_ROBOT_KEY"}
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    # The robot key is in the Secret, not in the ConfigMap.
    assert "${WECOM_ROBOT_KEY}" in one(docs, "ConfigMap")["data"]["config.toml"]


def test_existing_secret_replaces_the_chart_secret() -> None:
    docs = render(CHART / "ci" / "existing-secret-values.yaml")
    assert "Secret" not in kinds(docs)
    assert "PersistentVolumeClaim" not in kinds(docs)
    pod = one(docs, "Deployment")["spec"]["template"]
    assert pod["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "alertbridge-env"}}]
    assert "checksum/secret" not in pod["metadata"]["annotations"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "alertbridge-data"


def annotations(*sets: str) -> dict[str, str]:
    docs = render(CHART / "ci" / "robot-values.yaml", *sets)
    result: dict[str, str] = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    return result


def test_config_and_secret_changes_roll_the_pod() -> None:
    base = annotations()
    config_changed = annotations("config.server.language=en")
    secret_changed = annotations("secrets.WECOM_ROBOT_KEY=another-key")
    assert config_changed["checksum/config"] != base["checksum/config"]
    assert config_changed["checksum/secret"] == base["checksum/secret"]
    assert secret_changed["checksum/secret"] != base["checksum/secret"]
    assert secret_changed["checksum/config"] == base["checksum/config"]


def test_ingress_exposes_only_the_wecom_callback() -> None:
    docs = render(CHART / "ci" / "app-callback-ingress-values.yaml")
    ingress = one(docs, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "alertbridge.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/wecom/callback/"
    assert path["backend"]["service"] == {
        "name": one(docs, "Service")["metadata"]["name"],
        "port": {"name": "http"},
    }
    assert ingress["spec"]["tls"] == [{"secretName": "alertbridge-tls", "hosts": ["alertbridge.example.com"]}]


def test_everything_on() -> None:
    docs = render(CHART / "ci" / "full-values.yaml")
    assert kinds(docs) >= {
        "Ingress",
        "ServiceMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in one(docs, "PodDisruptionBudget")["spec"]
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert len(policy["ingress"][0]["from"]) == 2
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/alertbridge/alertbridge@sha256:" + "0123456789abcdef" * 4


# -- several replicas on PostgreSQL ----------------------------------------------------

POSTGRES_VALUES = CHART / "ci" / "postgres-replicas-values.yaml"
# What the Secret store.existingSecret names would hold (the chart never sees it).
DB_PASSWORD = "Db-Passw0rd-only-in-the-Secret"


def check_config(config: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`alertbridge check-config` on a rendered config.toml, with the pod's environment."""
    path = tmp_path / "config.toml"
    path.write_text(config, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], **env},
    )


def template_failure(*sets: str, values: Path | None = None) -> str:
    """stderr of a `helm template` that must fail."""
    args = ["template", "r", str(CHART)]
    if values:
        args += ["--values", str(values)]
    for assignment in sets:
        args += ["--set", assignment]
    result = helm(*args)
    assert result.returncode != 0, result.stdout
    return result.stderr


def deployment_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]
    return spec


@pytest.mark.parametrize(
    "sets",
    [
        pytest.param(("replicaCount=3",), id="default-sqlite"),
        pytest.param(("replicaCount=2", "persistence.enabled=false"), id="sqlite-on-an-empty-dir"),
        pytest.param(("replicaCount=3", "config.store.url=sqlite:////data/other.db"), id="sqlite-elsewhere"),
    ],
)
def test_several_replicas_on_sqlite_fail_the_render(sets: tuple[str, ...]) -> None:
    """SQLite has one writer: the chart says what to do rather than deploying replicas that fight over it."""
    stderr = template_failure(*sets)
    assert "needs a PostgreSQL store: SQLite takes a single writer" in stderr
    assert "store.url" in stderr and "store.existingSecret" in stderr
    assert "Running several replicas" in stderr


def test_one_replica_on_sqlite_keeps_recreate_and_its_claim() -> None:
    for docs in (render(), render(None, "replicaCount=1")):
        spec = deployment_spec(docs)
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}
        assert "PersistentVolumeClaim" in kinds(docs)
        assert "PodDisruptionBudget" not in kinds(docs)
        pod = spec["template"]["spec"]
        assert "affinity" not in pod
        assert "env" not in pod["containers"][0]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "persistentVolumeClaim" in volumes["data"]


def test_three_replicas_on_postgresql(tmp_path: Path) -> None:
    docs = render(POSTGRES_VALUES)
    assert not schema_problems(docs)
    assert "PersistentVolumeClaim" not in kinds(docs)
    spec = deployment_spec(docs)
    assert spec["replicas"] == 3
    # A new pod is ready before an old one stops: never fewer than three serving during a rollout.
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    selector = spec["selector"]["matchLabels"]

    budget = one(docs, "PodDisruptionBudget")["spec"]
    assert budget == {"selector": {"matchLabels": selector}, "minAvailable": 1}

    # Spread over nodes where the scheduler can: one drained node takes one replica.
    assert pod["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector},
                    },
                }
            ]
        }
    }
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # The store needs nothing on /data: an emptyDir, so pods may run on any node.
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}

    # The password reaches the pod from the Secret, as the variable the config refers to.
    assert {
        "name": "ALERTBRIDGE_DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "alertbridge-db", "key": "password"}},
    } in container["env"]
    config = one(docs, "ConfigMap")["data"]["config.toml"]
    store = tomllib.loads(config)["store"]
    assert store == {
        "url": "postgresql://alertbridge:${ALERTBRIDGE_DB_PASSWORD}@postgres.db.svc:5432/alertbridge?sslmode=require",
        "pool_size": 5,
    }
    env = {**pod_environment(docs), "ALERTBRIDGE_DB_PASSWORD": DB_PASSWORD}
    result = check_config(config, env, tmp_path)
    assert result.returncode == 0, result.stderr + config
    assert DB_PASSWORD not in result.stdout + result.stderr
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert DB_PASSWORD not in yaml.safe_dump(doc)


def test_the_whole_url_from_a_cloudnativepg_secret(tmp_path: Path) -> None:
    """CloudNativePG's `<cluster>-app` Secret has a ready `uri`: store.existingSecret alone uses it."""
    docs = render(None, "replicaCount=2", "store.existingSecret=alertbridge-pg-app")
    assert not schema_problems(docs)
    container = deployment_spec(docs)["template"]["spec"]["containers"][0]
    assert container["env"] == [
        {
            "name": "ALERTBRIDGE_DB_URL",
            "valueFrom": {"secretKeyRef": {"name": "alertbridge-pg-app", "key": "uri"}},
        }
    ]
    config = one(docs, "ConfigMap")["data"]["config.toml"]
    assert tomllib.loads(config)["store"]["url"] == "${ALERTBRIDGE_DB_URL}"
    uri = f"postgresql://app:{DB_PASSWORD}@alertbridge-pg-rw.monitoring:5432/app"
    result = check_config(config, {"ALERTBRIDGE_DB_URL": uri}, tmp_path)
    assert result.returncode == 0, result.stderr + config
    assert DB_PASSWORD not in result.stdout + result.stderr
    assert deployment_spec(docs)["strategy"]["type"] == "RollingUpdate"
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_one_replica_on_postgresql_rolls_without_a_claim_or_budget() -> None:
    docs = render(None, "store.url=postgresql://alertbridge@db:5432/alertbridge", "store.existingSecret=db")
    assert deployment_spec(docs)["strategy"]["type"] == "RollingUpdate"
    assert {"PersistentVolumeClaim", "PodDisruptionBudget"}.isdisjoint(kinds(docs))
    assert "affinity" not in deployment_spec(docs)["template"]["spec"]


@pytest.mark.parametrize(
    ("sets", "complaint"),
    [
        pytest.param(
            ("store.url=postgresql://alertbridge:hunter2@db:5432/alertbridge",),
            "the store URL holds a password, which would land in the ConfigMap",
            id="password-in-store-url",
        ),
        pytest.param(
            ("config.store.url=postgresql://alertbridge:hunter2@db/alertbridge",),
            "the store URL holds a password, which would land in the ConfigMap",
            id="password-in-config-store-url",
        ),
        pytest.param(
            ("store.url=postgresql://alertbridge:hunter2@db/alertbridge", "store.existingSecret=db"),
            "store.url must name the user and no password",
            id="password-and-secret",
        ),
        pytest.param(
            ("store.url=postgresql://db:5432/alertbridge", "store.existingSecret=db"),
            "store.url must name the user and no password",
            id="no-user-to-give-the-password-to",
        ),
    ],
)
def test_a_password_never_reaches_the_configmap(sets: tuple[str, ...], complaint: str) -> None:
    stderr = template_failure(*sets)
    assert complaint in stderr
    assert "hunter2" not in stderr


def test_store_password_from_secrets_is_a_reference() -> None:
    """`${VAR}` in config.store.url, VAR from the chart's Secret: the PostgreSQL URL most like the README's TOML."""
    url = "postgresql://alertbridge:${ALERTBRIDGE_DB_PASSWORD}@db/alertbridge"
    docs = render(
        None, "replicaCount=2", f"config.store.url={url}", f"secrets.ALERTBRIDGE_DB_PASSWORD={DB_PASSWORD}"
    )
    assert tomllib.loads(one(docs, "ConfigMap")["data"]["config.toml"])["store"]["url"] == url
    assert DB_PASSWORD not in yaml.safe_dump(one(docs, "ConfigMap"))
    assert deployment_spec(docs)["strategy"]["type"] == "RollingUpdate"


def test_replica_spreading_and_budget_can_be_changed(tmp_path: Path) -> None:
    hard = render(POSTGRES_VALUES, "podAntiAffinity=hard")
    (term,) = deployment_spec(hard)["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert not schema_problems(hard)

    off = render(POSTGRES_VALUES, "podAntiAffinity=none", "podDisruptionBudget.enabled=false")
    assert "affinity" not in deployment_spec(off)["template"]["spec"]
    assert "PodDisruptionBudget" not in kinds(off)

    # Node affinity of one's own keeps the anti-affinity beside it.
    node_affinity = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
            ]
        }
    }
    values = tmp_path / "affinity.yaml"
    values.write_text(yaml.safe_dump({"affinity": {"nodeAffinity": node_affinity}}), encoding="utf-8")
    own = list(_render((str(POSTGRES_VALUES), str(values)), ()))
    affinity = deployment_spec(own)["template"]["spec"]["affinity"]
    assert affinity["nodeAffinity"] == node_affinity
    assert set(affinity) == {"nodeAffinity", "podAntiAffinity"}

    budget = render(POSTGRES_VALUES, "podDisruptionBudget.minAvailable=2")
    assert one(budget, "PodDisruptionBudget")["spec"]["minAvailable"] == 2


def test_the_readme_replicas_values_render_validate_and_pass_check_config(tmp_path: Path) -> None:
    """The README's "Running several replicas" values, on top of its install values."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    base = tmp_path / "alertbridge-values.yaml"
    base.write_text(readme_helm_values(), encoding="utf-8")
    block = (
        readme.split("<!-- readme-helm-replicas-values:", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    )
    replicas = tmp_path / "alertbridge-replicas.yaml"
    replicas.write_text(block, encoding="utf-8")
    docs = list(_render((str(base), str(replicas)), ()))
    assert not schema_problems(docs)
    spec = deployment_spec(docs)
    assert spec["replicas"] > 1
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert "podAntiAffinity" in spec["template"]["spec"]["affinity"]
    assert "PersistentVolumeClaim" not in kinds(docs)

    # The Secret the README's CloudNativePG Cluster makes (`<cluster>-app`) is the one the values name.
    values = yaml.safe_load(block)
    cluster = yaml.safe_load(
        readme.split("<!-- readme-cnpg-cluster", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    )
    assert cluster["kind"] == "Cluster" and cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert values["store"]["existingSecret"] == f"{cluster['metadata']['name']}-app"
    assert cluster["metadata"]["namespace"] == NAMESPACE

    (container,) = spec["template"]["spec"]["containers"]
    (store_env,) = [v for v in container["env"] if v["name"].startswith("ALERTBRIDGE_DB_")]
    config = one(docs, "ConfigMap")["data"]["config.toml"]
    assert f"${{{store_env['name']}}}" in config
    # What CloudNativePG puts under `uri`; the README's Secret for the rest.
    uri = f"postgresql://app:{DB_PASSWORD}@{cluster['metadata']['name']}-rw.{NAMESPACE}:5432/app"
    env = {
        name: "CallbackToken123" if "TOKEN" in name else "x" * 20
        for name in re.findall(r"\$\{([A-Z_]+)\}", config)
    }
    env["WECOM_OPS_AES_KEY"] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    env[store_env["name"]] = uri
    result = check_config(config, env, tmp_path)
    assert result.returncode == 0, result.stderr + config
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert DB_PASSWORD not in yaml.safe_dump(doc)


# -- NOTES.txt -----------------------------------------------------------------------


def notes(values: Path, *sets: str, release: str = "r") -> str:
    """NOTES.txt as `helm install` prints it (`helm template` does not render notes)."""
    args = ["install", release, str(CHART), "--dry-run=client", "--namespace", NAMESPACE]
    args += ["--values", str(values)]
    for assignment in sets:
        args += ["--set", assignment]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\nNOTES:\n", 1)[1]


def test_notes_show_the_webhook_snippet_and_callback_url() -> None:
    text = notes(CHART / "ci" / "app-callback-ingress-values.yaml", "service.port=9000")
    snippet = text.split("  receivers:\n", 1)[1].split("\n\n", 1)[0]
    parsed = yaml.safe_load(snippet)
    assert parsed == [
        {
            "name": "wecom-oncall",
            "webhook_configs": [
                {
                    "url": f"http://r-alertbridge.{NAMESPACE}.svc:9000/alertmanager/oncall",
                    "send_resolved": True,
                    "http_config": {
                        "authorization": {"type": "Bearer", "credentials": "<the bearer token, see below>"}
                    },
                }
            ],
        }
    ]
    assert "get secret r-alertbridge -o jsonpath='{.data.ALERTBRIDGE_WEBHOOK_TOKEN}'" in text
    assert "https://alertbridge.example.com/wecom/callback/ops" in text
    assert "WARNING" not in text


def test_notes_warn_without_persistence() -> None:
    text = notes(CHART / "ci" / "robot-values.yaml", "persistence.enabled=false")
    assert "WARNING: persistence.enabled is false" in text
    assert f"http://r-alertbridge.{NAMESPACE}.svc:8080/alertmanager/sre-room" in text


def test_notes_do_not_warn_about_persistence_on_postgresql() -> None:
    """With PostgreSQL nothing lives on /data: its emptyDir loses nothing."""
    text = notes(POSTGRES_VALUES, "persistence.enabled=false")
    assert "WARNING" not in text
    assert f"http://r-alertbridge.{NAMESPACE}.svc:8080/alertmanager/sre-room" in text


@pytest.mark.parametrize(
    ("release", "name"),
    [("alertbridge", "alertbridge"), ("ab", "ab-alertbridge"), ("my-alertbridge", "my-alertbridge")],
)
def test_notes_name_the_objects_of_any_release(release: str, name: str) -> None:
    """The notes' kubectl commands and URLs name what `helm template` creates for that release."""
    values = CHART / "ci" / "app-callback-ingress-values.yaml"
    result = helm("template", release, str(CHART), "--namespace", NAMESPACE, "--values", str(values))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert one(docs, "Deployment")["metadata"]["name"] == name
    assert one(docs, "Service")["metadata"]["name"] == name
    assert one(docs, "Secret")["metadata"]["name"] == name
    text = notes(values, release=release)
    assert f"runs as deployment/{name} in namespace {NAMESPACE}" in text
    assert f"kubectl -n {NAMESPACE} exec deploy/{name} -- alertbridge check-config" in text
    assert f"url: http://{name}.{NAMESPACE}.svc:8080/alertmanager/oncall" in text
    assert f"get secret {name} -o jsonpath" in text


@pytest.mark.parametrize(
    ("tls", "scheme"),
    [
        pytest.param(
            [{"secretName": "t", "hosts": ["alertbridge.example.com"]}], "https", id="tls-for-the-host"
        ),
        pytest.param([{"secretName": "wildcard"}], "https", id="tls-without-hosts"),
        pytest.param([], "http", id="no-tls"),
        pytest.param(
            [{"secretName": "t", "hosts": ["other.example.com"]}], "http", id="tls-for-another-host"
        ),
    ],
)
def test_notes_callback_scheme_follows_the_ingress_tls(
    tls: list[dict[str, Any]], scheme: str, tmp_path: Path
) -> None:
    values = yaml.safe_load((CHART / "ci" / "app-callback-ingress-values.yaml").read_text(encoding="utf-8"))
    values["ingress"]["tls"] = tls
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    text = notes(path)
    assert f"\n  {scheme}://alertbridge.example.com/wecom/callback/ops\n" in text
    assert ("no ingress.tls entry covers alertbridge.example.com" in text) == (scheme == "http")


def test_readme_commands_and_urls_are_what_the_notes_print(tmp_path: Path) -> None:
    """Installed as the README says (release `alertbridge`), the notes agree with the README."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    values = tmp_path / "alertbridge-values.yaml"
    values.write_text(readme_helm_values(), encoding="utf-8")
    install = re.search(
        r"^helm install (\S+) \./helm/alertbridge -n (\S+) -f alertbridge-values.yaml$", readme, re.M
    )
    assert install, "the README's helm install line"
    release, namespace = install.groups()
    assert namespace == NAMESPACE
    text = notes(values, release=release)
    (exec_line,) = [line for line in readme.splitlines() if " exec deploy/" in line]
    assert exec_line.strip() in text
    callback = re.search(r"console \(`(https?://\S+)` here\)", readme)
    assert callback, "the README's callback URL"
    assert f"\n  {callback[1]}\n" in text
    # The kube-prometheus-stack snippet posts to the URL the notes give.
    kube_prometheus_stack_values = readme.split("<!-- kube-prometheus-stack-values", 1)[1]
    webhook = re.search(r"url: (http://\S+/alertmanager/oncall)", kube_prometheus_stack_values)
    assert webhook and f"url: {webhook[1]}" in text


# -- values.schema.json and values.yaml ----------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "complaint"),
    [
        pytest.param("replicaCount=one", "replicaCount", id="wrong-type"),
        pytest.param("replicaCount=-1", "replicaCount", id="negative-replicas"),
        pytest.param("store.url=mysql://db/alertbridge", "store", id="store-not-postgresql"),
        pytest.param("store.password=x", "password", id="unknown-store-key"),
        pytest.param("podAntiAffinity=sometimes", "podAntiAffinity", id="unknown-anti-affinity"),
        pytest.param("persistence.enabled=yes", "persistence", id="string-for-boolean"),
        pytest.param("service.port=http", "service", id="string-for-port"),
        pytest.param("replicas=1", "replicas", id="unknown-top-level-key"),
        pytest.param("image.tga=latest", "tga", id="unknown-image-key"),
        pytest.param("config.reciever.x.channel=console", "reciever", id="unknown-config-section"),
        pytest.param("secrets.not-an-env-name=x", "not-an-env-name", id="secret-key-not-a-variable"),
        pytest.param("serviceMonitor.labels.release=", "release", id="empty-release-label"),
    ],
)
def test_schema_rejects(assignment: str, complaint: str) -> None:
    for command in (["lint", "--strict"], ["template", "r"]):
        result = helm(*command, str(CHART), "--set", assignment)
        assert result.returncode != 0, f"helm {command[0]} accepted {assignment}"
        output = result.stdout + result.stderr
        assert "schema" in output and complaint in output, output


def test_values_yaml_documents_every_key() -> None:
    """Each key has a helm-docs `# --` comment right above it, unless an enclosing key
    has one (a Kubernetes object documented whole, such as `resources`), or it only
    groups documented keys (`image:`). Keys inside list items are data, not settings."""
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    key = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$")
    undocumented = []
    enclosing: list[tuple[int, bool]] = []  # (indentation, documented) of the keys we are in
    list_indents: list[int] = []  # indentation of the list items we are in
    for number, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        list_indents = [i for i in list_indents if i < indent]
        enclosing = [(i, d) for i, d in enclosing if i < indent]
        if line.lstrip().startswith("- "):
            list_indents.append(indent)
            continue
        match = key.match(line)
        if not match or list_indents:
            continue
        above = number - 1
        comment: list[str] = []
        while above >= 0 and lines[above].lstrip().startswith("#"):
            comment.append(lines[above].strip())
            above -= 1
        documented = any(c.startswith("# --") for c in comment)
        groups_keys = not match.group(3).strip()
        if not (documented or any(d for _, d in enclosing) or groups_keys):
            undocumented.append(f"values.yaml:{number + 1}: {match.group(2)}")
        enclosing.append((indent, documented))
    assert not undocumented, "keys without a `# --` comment:\n" + "\n".join(undocumented)
