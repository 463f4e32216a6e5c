"""Deployment artefacts: docker compose, Kubernetes, Prometheus alerts, Grafana dashboard.

The structural checks read the files directly; the last test runs scripts/validate_deploy.sh, which validates
them with the real tools (docker-compose config, kustomize + Kubernetes schemas, promtool, nginx -t, ...).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("catalogue", "enrolment", "billing", "reporting")
K8S = ROOT / "deploy" / "k8s"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(ROOT / "docker-compose.yml")["services"]
    return services


def k8s_objects() -> list[dict[str, Any]]:
    """Every object of the resources kustomization.yaml lists (the raw files, no kubectl needed)."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    objects: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        text = (K8S / name).read_text(encoding="utf-8")
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def test_compose_has_every_required_service() -> None:
    expected = {"rabbitmq", "postgres", "nginx", "prometheus", "grafana"}
    expected |= {f"{name}-{role}" for name in SERVICES for role in ("migrate", "api", "worker")}
    services = compose_services()
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"
    assert "healthcheck" in services["rabbitmq"]
    assert services["postgres"]["image"] == "postgres:15"
    assert services["nginx"]["image"] == "nginx:1.27"
    assert "8080:8080" in services["nginx"]["ports"]
    assert (
        "./deploy/nginx/tarjotin.conf.template:/etc/nginx/templates/tarjotin.conf.template:ro"
        in services["nginx"]["volumes"]
    )


@pytest.mark.parametrize("name", SERVICES)
def test_compose_api_and_worker_wait_for_their_migration(name: str) -> None:
    services = compose_services()
    migrate = services[f"{name}-migrate"]
    assert migrate["command"] == ["python", "-m", f"services.{name}", "migrate"]
    assert migrate["restart"] == "no"
    for role in ("api", "worker"):
        service = services[f"{name}-{role}"]
        assert service["command"] == ["python", "-m", f"services.{name}", role]
        assert service["depends_on"][f"{name}-migrate"]["condition"] == "service_completed_successfully"
        assert service["build"]["dockerfile"] == "Dockerfile"
        assert service["environment"][f"TARJOTIN_{name.upper()}_HTTP_HOST"] == "0.0.0.0"


def test_compose_shares_the_service_settings_through_extension_fields() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    compose = yaml.safe_load(text)
    assert "x-tarjotin-env" in compose
    assert text.count("&tarjotin-env") == 1, "the env block is written once and merged in"
    for name in (f"{n}-{r}" for n in SERVICES for r in ("migrate", "api", "worker")):
        env = dict(compose["services"][name]["environment"])
        if name == "reporting-api":  # the one addition: test_the_reports_api_alone_is_read_only
            assert env.pop("TARJOTIN_REPORTING_DATABASE_READ_ONLY") == "true"
        assert env == compose["x-tarjotin-env"], name


def env_file(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {key: value for key, value in pairs}


def compose_env(name: str, role: str) -> dict[str, str]:
    service = compose_services()[f"{name}-{role}"]
    env: dict[str, str] = {}
    for path in service["env_file"]:
        env |= env_file(ROOT / path)
    env |= {key: str(value) for key, value in service["environment"].items()}
    # Compose interpolation as with an empty shell environment: ${NAME:-default} becomes the default.
    return {key: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value) for key, value in env.items()}


def k8s_env() -> dict[str, str]:
    objects = {(obj["kind"], obj["metadata"]["name"]): obj for obj in k8s_objects()}
    return {
        **objects[("ConfigMap", "tarjotin-config")]["data"],
        **objects[("Secret", "tarjotin-secrets")]["stringData"],
    }


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_deployment_env_loads_into_the_service_settings(name: str, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The services' own Settings classes accept the env the deployments give them."""
    env = compose_env(name, "worker") if where == "compose" else k8s_env()
    for key in list(os.environ):
        if key.startswith("TARJOTIN_") or key == "AMQP_URL":
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = importlib.import_module(f"services.{name}.settings").Settings()
    ports = {"catalogue": (8101, 9101), "enrolment": (8102, 9102), "billing": (8103, 9103), "reporting": (8104, 9104)}
    assert (settings.http_host, settings.http_port, settings.worker_metrics_port) == ("0.0.0.0", *ports[name])
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.database_url.endswith(f"/{name}")
    assert settings.amqp_url.startswith("amqp://")
    assert (settings.exchange, settings.queue_prefix) == ("tarjotin.events", "tarjotin")


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_the_reports_api_alone_is_read_only(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reporting API containers get a read-only database engine (decision 004); the worker, the one
    writer, must not (it refuses to start with it), so the flag is never in the shared settings."""
    if where == "compose":
        api, worker = compose_env("reporting", "api"), compose_env("reporting", "worker")
    else:
        containers = {
            obj["metadata"]["name"]: obj["spec"]["template"]["spec"]["containers"][0]
            for obj in k8s_objects()
            if obj["kind"] == "Deployment"
        }
        assert "TARJOTIN_REPORTING_DATABASE_READ_ONLY" not in k8s_env()
        own = {name: {e["name"]: e["value"] for e in c.get("env", [])} for name, c in containers.items()}
        assert all("TARJOTIN_REPORTING_DATABASE_READ_ONLY" not in env for n, env in own.items() if n != "reporting-api")
        api, worker = k8s_env() | own["reporting-api"], k8s_env() | own["reporting-worker"]
    settings = importlib.import_module("services.reporting.settings").Settings
    for key in list(os.environ):
        if key.startswith("TARJOTIN_"):
            monkeypatch.delenv(key)
    for key, value in api.items():
        monkeypatch.setenv(key, value)
    assert settings().database_read_only
    monkeypatch.delenv("TARJOTIN_REPORTING_DATABASE_READ_ONLY")
    for key, value in worker.items():
        monkeypatch.setenv(key, value)
    assert not settings().database_read_only


def test_every_k8s_deployment_has_probes_and_resource_limits() -> None:
    deployments = {obj["metadata"]["name"]: obj for obj in k8s_objects() if obj["kind"] == "Deployment"}
    expected = {"gateway"} | {f"{name}-{role}" for name in SERVICES for role in ("api", "worker")}
    assert expected <= set(deployments), f"missing: {sorted(expected - set(deployments))}"
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert "livenessProbe" in container, f"{name}/{container['name']} has no livenessProbe"
            assert "readinessProbe" in container, f"{name}/{container['name']} has no readinessProbe"
        for container in pod.get("initContainers", []) + pod["containers"]:
            limits = container.get("resources", {}).get("limits", {})
            assert {"cpu", "memory"} <= set(limits), f"{name}/{container['name']} has no cpu/memory limits"


@pytest.mark.parametrize("name", SERVICES)
def test_k8s_api_probes_health_and_ready_after_migrating(name: str) -> None:
    deployments = {obj["metadata"]["name"]: obj for obj in k8s_objects() if obj["kind"] == "Deployment"}
    pod = deployments[f"{name}-api"]["spec"]["template"]["spec"]
    api = pod["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert [c["command"] for c in pod["initContainers"]] == [["python", "-m", f"services.{name}", "migrate"]]


def test_k8s_nginx_files_are_copies_of_deploy_nginx() -> None:
    template = ROOT / "deploy" / "nginx" / "tarjotin.conf.template"
    docs = ROOT / "deploy" / "nginx" / "docs" / "index.html"
    assert (K8S / "nginx" / "tarjotin.conf.template").read_bytes() == template.read_bytes()
    assert (K8S / "nginx" / "docs" / "index.html").read_bytes() == docs.read_bytes()


def test_alert_rules_parse_and_name_the_expected_alerts() -> None:
    rules = [rule for group in load_yaml(ROOT / "deploy/prometheus/alerts.yml")["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert names >= {
        "TarjotinOutboxStale",
        "TarjotinDeadLetters",
        "TarjotinConsumerLagHigh",
        "TarjotinHttp5xxRatioHigh",
        "TarjotinRelayErrors",
        "TarjotinServiceDown",
    }
    by_name = {rule["alert"]: rule for rule in rules}
    assert "outbox_oldest_age_seconds" in by_name["TarjotinOutboxStale"]["expr"]
    assert "> 60" in by_name["TarjotinOutboxStale"]["expr"]
    assert by_name["TarjotinOutboxStale"]["for"] == "5m"
    assert "histogram_quantile(0.99" in by_name["TarjotinConsumerLagHigh"]["expr"]
    assert "> 0.01" in by_name["TarjotinHttp5xxRatioHigh"]["expr"]
    assert all(rule["labels"]["severity"] and rule["annotations"]["summary"] for rule in rules)
    tests = load_yaml(ROOT / "deploy/prometheus/alerts_test.yml")["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert len(tested & names) >= 3
    for alert in tested:  # each tested alert is checked both firing and not firing
        cases = [case for test in tests for case in test["alert_rule_test"] if case["alertname"] == alert]
        assert any(case["exp_alerts"] for case in cases), f"{alert} is never expected to fire"
        assert any(not case["exp_alerts"] for case in cases), f"{alert} is never expected to stay quiet"


def test_grafana_dashboard_has_the_expected_panels() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/tarjotin.json").read_text(encoding="utf-8"))
    datasource = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    panels = {panel["title"]: panel for panel in dashboard["panels"]}
    expected = {
        "HTTP request rate by service": "http_requests_total",
        "HTTP 5xx error ratio by service": 'status=~"5.."',
        "HTTP p95 latency by service": "http_request_duration_seconds_bucket",
        "Events published by type": "events_published_total",
        "Events consumed by type and outcome": "events_consumed_total",
        "Events failed by type and destination": "events_failed_total",
        "Outbox backlog": "outbox_backlog",
        "Outbox oldest event age": "outbox_oldest_age_seconds",
        "End-to-end event lag p50 / p99": "event_lag_seconds_bucket",
        "Dead letters": "dead_letters_total",
        "Business events": "business_events_total",
        "Euros committed": "euros_total",
    }
    for title, metric in expected.items():
        assert title in panels, f"no panel {title!r}"
        assert any(metric in target["expr"] for target in panels[title]["targets"]), f"{title!r} lacks {metric}"
    lag = [target["expr"] for target in panels["End-to-end event lag p50 / p99"]["targets"]]
    assert any("histogram_quantile(0.5," in expr for expr in lag)
    assert any("histogram_quantile(0.99," in expr for expr in lag)
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], f"{panel['title']!r}: wrong datasource"
        assert panel["targets"], f"{panel['title']!r} has no targets"


def test_validate_deploy_script_passes() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "validate_deploy.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "deploy validation passed" in output
    # The script skips the kustomize render when kubectl is missing; this test does not accept that.
    assert "kubectl kustomize deploy/k8s:" in output, output[-3000:]
    assert "SKIPPING" not in output


def test_the_gateway_closes_idle_upstream_connections_before_the_services_do() -> None:
    template = (ROOT / "deploy" / "nginx" / "tarjotin.conf.template").read_text()
    upstreams = re.findall(r"^upstream (\S+)\s+\{(.*)\}\s*$", template, flags=re.M)  # one line each
    assert {name for name, _ in upstreams} == {f"tarjotin_{s}" for s in SERVICES}
    service_keeps_s = ServiceSettings.model_fields["http_keepalive_s"].default
    for name, body in upstreams:
        found = re.search(r"keepalive_timeout (\d+)s;", body)
        assert found, f"{name}: no keepalive_timeout (nginx's default, 60 s, must be set where it can be compared)"
        assert int(found.group(1)) < service_keeps_s, name
