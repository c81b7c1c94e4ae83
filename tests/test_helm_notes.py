"""The chart's NOTES.txt: the webhook snippet and callback URL an operator
copies, right for any release name and ingress, as the README shows them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm_cli import (
    CHART,
    NAMESPACE,
    POSTGRES_VALUES,
    REPO,
    helm,
    one,
    readme_helm_values,
)

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
