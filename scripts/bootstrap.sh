#!/usr/bin/env bash
# Make this machine able to run Tarjotin: a venv with the pinned packages, and RabbitMQ, nginx and
# (for the tests) PostgreSQL from Debian's packages when they are missing, started when they are down.
#   scripts/bootstrap.sh venv | rabbitmq | nginx | postgres | all
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
AMQP_PORT=${TARJOTIN_AMQP_PORT:-5672}
PG_PORT=${TARJOTIN_PG_PORT:-5432}
APT_UPDATED=''

say() { echo "bootstrap: $*" >&2; }
port_open() { (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

apt_install() {
  command -v apt-get >/dev/null || { say "apt-get not found; install $* by hand"; exit 1; }
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq || true; APT_UPDATED=1; fi
  say "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wait_port() {  # PORT SECONDS NAME
  local i
  for ((i = 0; i < $2 * 2; i++)); do port_open "$1" && return 0; sleep 0.5; done
  say "$3 is not listening on 127.0.0.1:$1 after $2 s"; return 1
}

ensure_venv() {
  local py stamp="$VENV/.installed"
  if [ ! -x "$VENV/bin/python" ]; then
    py=$(command -v python3.11 || command -v python3 || true)
    if [ -z "$py" ] || ! "$py" -c 'import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
      apt_install python3 python3-venv python3-pip
      py=$(command -v python3.11 || command -v python3)
    fi
    say "creating $VENV with $("$py" --version)"
    "$py" -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    say "installing Python packages (pinned in pyproject.toml)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "${ROOT}[dev]"
    touch "$stamp"
  fi
}

ensure_rabbitmq() {
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  if ! port_open "$AMQP_PORT"; then
    say "starting RabbitMQ"
    # The node may be up with its app stopped (rabbitmqctl stop_app): then start_app is enough.
    as_root rabbitmqctl -q start_app >/dev/null 2>&1 || as_root rabbitmq-server -detached >/dev/null 2>&1 || true
    as_root rabbitmqctl await_startup --timeout 120 >/dev/null 2>&1 || wait_port "$AMQP_PORT" 120 RabbitMQ
  fi
}

ensure_nginx() {
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light
}

ensure_postgres() {
  command -v psql >/dev/null || apt_install postgresql postgresql-client
  if ! port_open "$PG_PORT"; then
    say "starting PostgreSQL"
    local version
    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -1)
    [ -n "$version" ] || { say "no PostgreSQL cluster found under /etc/postgresql"; exit 1; }
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_port "$PG_PORT" 60 PostgreSQL
  fi
  # Local runs and tests connect as `postgres` over TCP without a password (trust on 127.0.0.1).
  if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atc 'select 1' >/dev/null 2>&1; then
    local hba
    hba=$(as_root su postgres -c "psql -Atc 'show hba_file'")
    say "allowing trust auth for postgres on 127.0.0.1 in $hba (local machine only)"
    as_root sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    as_root su postgres -c "psql -Atc 'select pg_reload_conf()'" >/dev/null
  fi
}

case "${1:-all}" in
  venv) ensure_venv ;;
  rabbitmq) ensure_rabbitmq ;;
  nginx) ensure_nginx ;;
  postgres) ensure_postgres ;;
  all) ensure_venv; ensure_rabbitmq; ensure_nginx; ensure_postgres ;;
  *) say "unknown target $1"; exit 2 ;;
esac
