"""The real helm command line, for the chart tests (from PATH, or from the
virtualenv where .ci/install-helm puts it when it cannot write /usr/local/bin),
and what those tests read from its output: rendered documents, the pod's
environment, the README's values, check-config on a rendered config."""

from __future__ import annotations

import base64
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.harness import require_binary

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "alertbridge"


def helm_binary() -> str:
    """helm from PATH, or from the virtualenv where .ci/install-helm puts it without root."""
    candidate = Path(sys.executable).parent / "helm"
    return str(candidate) if candidate.exists() else require_binary("helm")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120)


VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))

# Chart.yaml's kubeVersion floor, and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]

CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

NAMESPACE = "monitoring"

# What existingSecret-values.yaml's Secret (made outside the chart) would hold.
EXISTING_SECRET_ENV = {"WECOM_OPS_SECRET": "existing-app-secret"}


@functools.cache
def render_files(values: tuple[str, ...], sets: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
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
    return list(render_files((str(values),) if values else (), sets))


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [
        d for d in docs if d["kind"] == kind and "helm.sh/hook" not in d["metadata"].get("annotations", {})
    ]
    return doc


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def values_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


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


def readme_helm_values() -> str:
    """The values block the README tells new users to write (alertbridge-values.yaml)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block: str = readme.split("<!-- readme-helm-values:", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    return block


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


# Three replicas on PostgreSQL, the password from an existing Secret.
POSTGRES_VALUES = CHART / "ci" / "postgres-replicas-values.yaml"
