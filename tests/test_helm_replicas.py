"""The Helm chart with several replicas on PostgreSQL: SQLite refuses a second
replica, PostgreSQL gets a rolling update, a disruption budget, spreading
across nodes and its password from a Secret, never from the ConfigMap."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm_cli import (
    CHART,
    NAMESPACE,
    POSTGRES_VALUES,
    REPO,
    check_config,
    helm,
    kinds,
    one,
    pod_environment,
    readme_helm_values,
    render,
    render_files,
    schema_problems,
)

# -- several replicas on PostgreSQL ----------------------------------------------------

# What the Secret store.existingSecret names would hold (the chart never sees it).
DB_PASSWORD = "Db-Passw0rd-only-in-the-Secret"
# The downward API's pod name: [store] replica, the name on the pod's leases.
POD_NAME_ENV = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


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
def test_several_replicas_on_sqlite_fail_therender_files(sets: tuple[str, ...]) -> None:
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
        # Each pod names its leases by its own name, from the downward API.
        "replica": "${POD_NAME}",
    }
    assert POD_NAME_ENV in container["env"]
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
        },
        POD_NAME_ENV,
    ]
    config = one(docs, "ConfigMap")["data"]["config.toml"]
    assert tomllib.loads(config)["store"]["url"] == "${ALERTBRIDGE_DB_URL}"
    assert tomllib.loads(config)["store"]["replica"] == "${POD_NAME}"
    uri = f"postgresql://app:{DB_PASSWORD}@alertbridge-pg-rw.monitoring:5432/app"
    result = check_config(config, {"ALERTBRIDGE_DB_URL": uri, "POD_NAME": "alertbridge-5c7d-q8z"}, tmp_path)
    assert result.returncode == 0, result.stderr + config
    assert DB_PASSWORD not in result.stdout + result.stderr
    assert deployment_spec(docs)["strategy"]["type"] == "RollingUpdate"
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_one_replica_on_postgresql_rolls_without_a_claim_or_budget() -> None:
    docs = render(None, "store.url=postgresql://alertbridge@db:5432/alertbridge", "store.existingSecret=db")
    assert deployment_spec(docs)["strategy"]["type"] == "RollingUpdate"
    assert {"PersistentVolumeClaim", "PodDisruptionBudget"}.isdisjoint(kinds(docs))
    assert "affinity" not in deployment_spec(docs)["template"]["spec"]


def test_each_pod_names_its_leases_by_its_pod_name() -> None:
    """Two replicas with one name would take each other's leases for their own: on
    PostgreSQL every pod's [store] replica is its own name, unless config sets one."""
    postgres = ("store.url=postgresql://alertbridge@db:5432/alertbridge", "store.existingSecret=db")
    for sets in (postgres, ("config.store.url=postgresql://alertbridge@db/alertbridge",)):
        docs = render(None, *sets)
        config = tomllib.loads(one(docs, "ConfigMap")["data"]["config.toml"])
        assert config["store"]["replica"] == "${POD_NAME}"
        (container,) = deployment_spec(docs)["template"]["spec"]["containers"]
        assert POD_NAME_ENV in container["env"]
    docs = render(None, *postgres, "config.store.replica=alertbridge-eu")
    assert (
        tomllib.loads(one(docs, "ConfigMap")["data"]["config.toml"])["store"]["replica"] == "alertbridge-eu"
    )
    # SQLite has one process and no leases to share: nothing added.
    docs = render()
    assert "replica" not in tomllib.loads(one(docs, "ConfigMap")["data"]["config.toml"])["store"]
    assert "env" not in deployment_spec(docs)["template"]["spec"]["containers"][0]


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
    own = list(render_files((str(POSTGRES_VALUES), str(values)), ()))
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
    docs = list(render_files((str(base), str(replicas)), ()))
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
