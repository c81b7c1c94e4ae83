"""The README's way into Kubernetes, proven against what the other side does with it.

`test_helm_chart.py` renders alertbridge's own chart. These tests check the
pieces a newcomer pastes into *other* software: the kube-prometheus-stack
values that point its Alertmanager at alertbridge, merged into that chart's
defaults exactly as Helm merges them and then checked by the real ``amtool``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.harness import require_binary
from tests.helm_cli import REPO, helm

DATA = Path(__file__).resolve().parent / "data" / "kubernetes"
READMES = [REPO / "README.md", REPO / "helm" / "alertbridge" / "README.md"]
# kube-prometheus-stack's default alertmanager.config, as its values.yaml had it.
KPS_DEFAULTS = sorted(DATA.glob("kube-prometheus-stack-*-alertmanager.yaml"))
# What the README said before: `receivers` alone, which replaces the chart's list
# (and its "null" receiver) while the chart's `route.routes` still names "null".
RECEIVERS_ONLY = """\
alertmanager:
  config:
    route:
      receiver: wecom-oncall
    receivers:
      - name: wecom-oncall
        webhook_configs:
          - url: http://alertbridge.monitoring.svc:8080/alertmanager/oncall
"""


def marked_block(path: Path, marker: str) -> str:
    """The fenced block right after ``<!-- marker…`` in a README, up to ``<!-- /marker -->``."""
    text = path.read_text(encoding="utf-8")
    blocks = re.findall(rf"<!-- {marker}[:\s].*?-->\n```\w*\n(.*?)```\n<!-- /{marker} -->", text, re.S)
    assert len(blocks) == 1, f"{path.name}: expected one <!-- {marker} --> block, found {len(blocks)}"
    block: str = blocks[0]
    return block


def kps_values_id(path: Path) -> str:
    return path.name.removesuffix("-alertmanager.yaml")


def merged_alertmanager_config(defaults: Path, values: str, tmp_path: Path) -> str:
    """alertmanager.config after Helm coalesces the user's values into the chart's defaults.

    A two-file chart whose values.yaml is kube-prometheus-stack's default
    `alertmanager:` section, rendered by the real helm with the user's values:
    maps are merged key by key, lists replaced whole, as in the real chart.
    """
    chart = tmp_path / "kps-defaults"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: kps-defaults\nversion: 0.0.0\n", encoding="utf-8"
    )
    (chart / "values.yaml").write_text(defaults.read_text(encoding="utf-8"), encoding="utf-8")
    (chart / "templates" / "config.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: alertmanager\ndata:\n"
        "  alertmanager.yaml: {{ toYaml .Values.alertmanager.config | quote }}\n",
        encoding="utf-8",
    )
    user_values = tmp_path / "kube-prometheus-stack-values.yaml"
    user_values.write_text(values, encoding="utf-8")
    result = helm("template", "kube-prometheus-stack", str(chart), "--values", str(user_values))
    assert result.returncode == 0, result.stderr
    config: str = yaml.safe_load(result.stdout)["data"]["alertmanager.yaml"]
    return config


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("amtool"), *args], capture_output=True, text=True, timeout=60)


def receiver_for(config: Path, *labels: str) -> str:
    """The receiver Alertmanager's route tree picks for an alert with these labels."""
    result = amtool("config", "routes", "test", f"--config.file={config}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("defaults", KPS_DEFAULTS, ids=kps_values_id)
@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_readme_kube_prometheus_stack_values_are_valid_after_helm_merges_them(
    readme: Path, defaults: Path, tmp_path: Path
) -> None:
    snippet = marked_block(readme, "kube-prometheus-stack-values")
    merged = tmp_path / "alertmanager.yaml"
    merged.write_text(merged_alertmanager_config(defaults, snippet, tmp_path), encoding="utf-8")

    result = amtool("check-config", str(merged))
    assert result.returncode == 0, result.stdout + result.stderr + merged.read_text()

    # Alerts reach alertbridge; the chart's always-firing helpers still go nowhere.
    assert receiver_for(merged, "alertname=KubePodCrashLooping", "severity=warning") == "wecom-oncall"
    assert receiver_for(merged, "alertname=Watchdog", "severity=none") == "null"
    assert receiver_for(merged, "alertname=InfoInhibitor", "severity=none") == "null"
    config: dict[str, Any] = yaml.safe_load(merged.read_text(encoding="utf-8"))
    # The chart's inhibit rules survive the merge (the snippet leaves that list alone).
    assert (
        config["inhibit_rules"]
        == yaml.safe_load(defaults.read_text())["alertmanager"]["config"]["inhibit_rules"]
    )
    (webhook,) = next(r for r in config["receivers"] if r["name"] == "wecom-oncall")["webhook_configs"]
    assert webhook["url"].endswith("/alertmanager/oncall")
    assert webhook["http_config"]["authorization"]["type"] == "Bearer"


@pytest.mark.parametrize("defaults", KPS_DEFAULTS, ids=kps_values_id)
def test_receivers_alone_break_the_merged_config(defaults: Path, tmp_path: Path) -> None:
    """The check above has teeth: the README's former snippet fails it."""
    merged = tmp_path / "alertmanager.yaml"
    merged.write_text(merged_alertmanager_config(defaults, RECEIVERS_ONLY, tmp_path), encoding="utf-8")
    result = amtool("check-config", str(merged))
    assert result.returncode != 0
    assert 'undefined receiver "null"' in result.stdout + result.stderr


# -- the AlertmanagerConfig resource ---------------------------------------------------


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A structural CRD schema as the API server applies it with strict field validation.

    Kubernetes rejects unknown fields (``kubectl apply --validate=strict``, the
    default since 1.27) except under ``x-kubernetes-preserve-unknown-fields``;
    in JSON Schema terms every object with `properties` is closed.
    """
    schema = dict(schema)
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema.setdefault("additionalProperties", False)
        schema["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        schema["items"] = strict(schema["items"])
    return schema


def alertmanagerconfig_problems(resource: dict[str, Any]) -> list[str]:
    """Every way a resource breaks the v1alpha1 AlertmanagerConfig CRD schema (the fixture)."""
    crd = yaml.safe_load((DATA / "alertmanagerconfigs-crd-v1alpha1.yaml").read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    validator = jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))
    problems = [
        "/".join(str(p) for p in error.absolute_path) + ": " + error.message
        for error in validator.iter_errors(resource)
    ]
    if resource.get("apiVersion") != f"{crd['spec']['group']}/v1alpha1":
        problems.append(f"apiVersion: {resource.get('apiVersion')}")
    if resource.get("kind") != crd["spec"]["names"]["kind"]:
        problems.append(f"kind: {resource.get('kind')}")
    # x-kubernetes-list-type: map keyed on name.
    names = [r.get("name") for r in resource.get("spec", {}).get("receivers", [])]
    if len(names) != len(set(names)):
        problems.append(f"spec/receivers: duplicate names {names}")
    return problems


def readme_alertmanagerconfig() -> dict[str, Any]:
    resource: dict[str, Any] = yaml.safe_load(marked_block(READMES[1], "alertmanagerconfig"))
    return resource


def test_readme_alertmanagerconfig_matches_the_crd_schema() -> None:
    resource = readme_alertmanagerconfig()
    assert alertmanagerconfig_problems(resource) == []
    spec = resource["spec"]
    assert spec["route"]["receiver"] in {r["name"] for r in spec["receivers"]}
    # Watchdog and InfoInhibitor fire all the time; they must not reach WeCom.
    assert {"name": "alertname", "matchType": "!~", "value": "InfoInhibitor|Watchdog"} in spec["route"][
        "matchers"
    ]


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        pytest.param(
            ("receivers", 0, "webhookConfigs", 0, "send_resolved"), True, "send_resolved", id="snake"
        ),
        pytest.param(("route", "matchers", 0, "matchType"), "~=", "~=", id="bad-enum"),
        pytest.param(("route", "groupWait"), "30 seconds", "groupWait", id="bad-duration"),
        pytest.param(("receivers", 0, "name"), "", "name", id="empty-name"),
    ],
)
def test_the_crd_check_rejects(path: tuple[str | int, ...], value: object, complaint: str) -> None:
    """The schema check has teeth: typical mistakes in the resource are reported."""
    resource = readme_alertmanagerconfig()
    node: Any = resource["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    problems = alertmanagerconfig_problems(resource)
    assert any(complaint in p for p in problems), problems


def test_readme_documents_the_matcher_strategy() -> None:
    """Under the operator's default (OnNamespace) the resource sees only its own namespace."""
    values = yaml.safe_load(marked_block(READMES[1], "alertmanager-matcher-strategy"))
    assert values == {
        "alertmanager": {"alertmanagerSpec": {"alertmanagerConfigMatcherStrategy": {"type": "None"}}}
    }
    for readme in READMES:
        text = " ".join(readme.read_text(encoding="utf-8").split())
        assert "alertmanagerConfigMatcherStrategy" in text, readme
    assert "`OnNamespace`" in READMES[1].read_text(encoding="utf-8")
