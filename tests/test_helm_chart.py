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

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import alertbridge
from tests.harness import require_binary
from tests.helm_cli import (
    CHART,
    NAMESPACE,
    REPO,
    VALUES_FILES,
    helm,
    kinds,
    one,
    pod_environment,
    readme_helm_values,
    render,
    schema_problems,
    values_id,
)

# -- lint and Kubernetes schemas -------------------------------------------------


@pytest.mark.parametrize("values", VALUES_FILES, ids=values_id)
def test_helm_lint_strict(values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "--values", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUES_FILES, ids=values_id)
def test_manifests_match_the_kubernetes_schemas(values: Path) -> None:
    problems = schema_problems(render(values))
    assert not problems, "\n".join(problems)


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


def test_a_missing_secret_fails_therender_files() -> None:
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
