#!/usr/bin/env bash
# Run the whole Tarjotin system on this machine, without containers.
#   scripts/tarjotin.sh up        install what is missing, migrate, start 4 APIs + 4 workers + nginx, load demo
#   scripts/tarjotin.sh down      stop what `up` started
#   scripts/tarjotin.sh status    what is running
#   scripts/tarjotin.sh start|stop|kill SERVICE ROLE   one process (ROLE: api | worker | readerN); kill = SIGKILL
#   scripts/tarjotin.sh start SERVICE ROLE --wait      and wait until it answers /ready on its own port (not a worker)
#   scripts/tarjotin.sh ports     the ports `up` gives each part, one "NAME PORT" per line (gateway, issuer,
#                                 the services, reporting's readers): the one place that knows the layout
# Settings (environment, all optional):
#   TARJOTIN_RUN_DIR (var/run)  TARJOTIN_DATA_DIR (var/data)  TARJOTIN_GATEWAY_PORT (8080)
#   TARJOTIN_PORT_BASE (8100: services on +1..+4, the development token issuer on +5)  TARJOTIN_DB (sqlite | postgres)
#   TARJOTIN_PG_URL (postgresql://postgres@127.0.0.1:5432)  TARJOTIN_PG_DB_PREFIX (tarjotin)
#   TARJOTIN_DEMO (1: load demo data)  TARJOTIN_EXCHANGE, TARJOTIN_QUEUE_PREFIX (bus namespace)
#   TARJOTIN_PROCESSES (combined: API + worker in one process per service, the default on SQLite;
#                       split: separate api and worker processes, the default on PostgreSQL)
#   TARJOTIN_REPORTING_READERS (1 on SQLite, 0 on PostgreSQL): extra read-only reporting API processes
#                       (reader1, reader2, ... on ports base+6, +7, ...) beside reporting's own; the gateway
#                       sends each report URL always to the same one of them, so each answer is computed and
#                       cached once (decision 004)
#   TARJOTIN_REPORTING_WORKER_NICE (10): the scheduling priority (nice) of reporting's worker when it is
#                       a process of its own (split); 0 gives it the same as the rest
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv}
PY="$VENV/bin/python"
RUN=${TARJOTIN_RUN_DIR:-$ROOT/var/run}
export TARJOTIN_DATA_DIR=${TARJOTIN_DATA_DIR:-$ROOT/var/data}
GATEWAY_PORT=${TARJOTIN_GATEWAY_PORT:-8080}
PORT_BASE=${TARJOTIN_PORT_BASE:-8100}
DB=${TARJOTIN_DB:-sqlite}
PG_URL=${TARJOTIN_PG_URL:-postgresql://postgres@127.0.0.1:5432}
PG_PREFIX=${TARJOTIN_PG_DB_PREFIX:-tarjotin}
SERVICES=(catalogue enrolment billing reporting)
ISSUER_PORT=$((PORT_BASE + 5))
export TARJOTIN_DEV_ISSUER_URL="http://127.0.0.1:$ISSUER_PORT"
if [ "$DB" = sqlite ]; then PROCESSES=${TARJOTIN_PROCESSES:-combined}; else PROCESSES=${TARJOTIN_PROCESSES:-split}; fi
[[ $PROCESSES == combined || $PROCESSES == split ]] || { echo "TARJOTIN_PROCESSES must be combined or split" >&2; exit 2; }
# SQLite runs a report's SQL in the API process, so one reader beside it halves the report queue; on
# PostgreSQL the SQL runs in the database's own processes, and a reader only adds a process (decision 004).
if [ "$DB" = sqlite ]; then READERS=${TARJOTIN_REPORTING_READERS:-1}; else READERS=${TARJOTIN_REPORTING_READERS:-0}; fi
[[ $READERS =~ ^[0-4]$ ]] || { echo "TARJOTIN_REPORTING_READERS must be a number from 0 to 4" >&2; exit 2; }
# Reporting's worker only keeps read models up to date, in batches; on a shared machine the request
# path (the APIs, the saga's workers) goes first. Only a split worker: a combined process also answers.
WORKER_NICE=${TARJOTIN_REPORTING_WORKER_NICE:-10}
[[ $WORKER_NICE =~ ^[0-9]$|^1[0-9]$ ]] || { echo "TARJOTIN_REPORTING_WORKER_NICE must be a number from 0 to 19" >&2; exit 2; }
role_of() {  # api|worker → the process that has that role; readerN stays itself
  if [[ $1 == reader* ]]; then echo "$1"; elif [ "$PROCESSES" = combined ]; then echo all; else echo "$1"; fi
}
LOG="$RUN/log"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

say() { echo "tarjotin: $*" >&2; }
die() { say "$*"; exit 1; }

port_of() {
  case $1 in catalogue) echo $((PORT_BASE + 1));; enrolment) echo $((PORT_BASE + 2));;
             billing) echo $((PORT_BASE + 3));; reporting) echo $((PORT_BASE + 4));; *) die "unknown service $1";; esac
}
reader_port() { echo $((PORT_BASE + 5 + $1)); }  # the Nth read-only reporting API (the issuer is on +5)

reporting_upstream() {  # the reporting API and its readers, as the gateway's upstream lists its servers
  local i list
  list="127.0.0.1:$(port_of reporting)"
  for ((i = 1; i <= READERS; i++)); do list+="; server 127.0.0.1:$(reader_port "$i")"; done
  echo "$list"
}

service_env() {  # SERVICE: print the env assignments for one service's processes
  local s=$1 upper=${1^^}
  echo "TARJOTIN_${upper}_HTTP_PORT=$(port_of "$s")"
  echo "PROMETHEUS_MULTIPROC_DIR=$RUN/metrics/$s"
  # Trust the development issuer unless a key source is configured (production must configure one).
  if [ -z "${TARJOTIN_AUTH_JWKS_URL:-}" ] && [ -z "${TARJOTIN_AUTH_PUBLIC_KEY_FILE:-}" ]; then
    echo "TARJOTIN_AUTH_JWKS_URL=$TARJOTIN_DEV_ISSUER_URL/.well-known/jwks.json"
  fi
  if [ "$DB" = postgres ]; then
    echo "TARJOTIN_${upper}_DATABASE_URL=${PG_URL/postgresql:/postgresql+asyncpg:}/${PG_PREFIX}_$s"
  fi
}

pidfile() { echo "$RUN/pids/$1-$2.pid"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_one() {  # SERVICE ROLE (api | worker | readerN: the Nth read-only reporting API)
  local s=$1 role pf command extra=()
  role=$(role_of "$2")
  command=$role
  if [[ $role == reader* ]]; then
    [[ $s == reporting && ${role#reader} =~ ^[1-9]$ ]] || die "readers are reporting's: reporting reader1, reader2, ..."
    ((${role#reader} <= READERS)) \
      || die "$role is not in the gateway's reporting upstream: TARJOTIN_REPORTING_READERS is $READERS (set it before up)"
    extra=("TARJOTIN_REPORTING_HTTP_PORT=$(reader_port "${role#reader}")")
    command=api
  fi
  # Every reporting process that runs the API without the worker only reads (decision 004).
  if [[ $s == reporting && $command == api ]]; then extra+=(TARJOTIN_REPORTING_DATABASE_READ_ONLY=true); fi
  local priority=()
  if [[ $s == reporting && $command == worker ]]; then priority=(nice -n "$WORKER_NICE"); fi
  pf=$(pidfile "$s" "$role")
  alive "$pf" && { say "$s $role already running (pid $(cat "$pf"))"; return 0; }
  mkdir -p "$RUN/pids" "$LOG" "$RUN/metrics/$s"
  # shellcheck disable=SC2046
  env $(service_env "$s") "${extra[@]}" setsid "${priority[@]}" "$PY" -m "services.$s" "$command" >>"$LOG/$s-$role.log" 2>&1 </dev/null &
  echo $! >"$pf"
}

stop_one() {  # SERVICE ROLE [SIGNAL]
  local pf pid i
  pf=$(pidfile "$1" "$(role_of "$2")")
  alive "$pf" || { rm -f "$pf"; return 0; }
  pid=$(cat "$pf")
  kill "-${3:-TERM}" "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pf"
}

create_pg_databases() {
  local s
  for s in "${SERVICES[@]}"; do
    psql "$PG_URL/postgres" -Atqc "select 1 from pg_database where datname = '${PG_PREFIX}_$s'" | grep -q 1 \
      || psql "$PG_URL/postgres" -qc "create database ${PG_PREFIX}_$s" >/dev/null
  done
}

render_nginx() {
  mkdir -p "$RUN/nginx/tmp"
  chmod 1777 "$RUN/nginx/tmp"
  GATEWAY_PORT=$GATEWAY_PORT ACCESS_LOG="$LOG/gateway-access.log" DOCS_ROOT="$ROOT/deploy/nginx/docs" \
  CATALOGUE_UPSTREAM=127.0.0.1:$(port_of catalogue) ENROLMENT_UPSTREAM=127.0.0.1:$(port_of enrolment) \
  BILLING_UPSTREAM=127.0.0.1:$(port_of billing) REPORTING_UPSTREAM="$(reporting_upstream)" \
    "$PY" -c 'import os, string, sys; sys.stdout.write(string.Template(sys.stdin.read()).safe_substitute(os.environ))' \
    <deploy/nginx/tarjotin.conf.template >"$RUN/nginx/tarjotin.conf"
  cat >"$RUN/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $RUN/nginx/nginx.pid;
error_log $LOG/gateway-error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $RUN/nginx/tmp/body;
    proxy_temp_path $RUN/nginx/tmp/proxy;
    fastcgi_temp_path $RUN/nginx/tmp/fastcgi;
    uwsgi_temp_path $RUN/nginx/tmp/uwsgi;
    scgi_temp_path $RUN/nginx/tmp/scgi;
    include $RUN/nginx/tarjotin.conf;
}
CONF
  "$NGINX" -t -q -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf"
}

start_issuer() {  # the development token issuer: JWKS for the services, /token for people and the demo
  local pf="$RUN/pids/issuer.pid"
  [ "${TARJOTIN_ENV:-development}" = production ] && return 0
  alive "$pf" && return 0
  mkdir -p "$RUN/pids" "$LOG"
  setsid "$PY" -m shared.devissuer serve --port "$ISSUER_PORT" >>"$LOG/issuer.log" 2>&1 </dev/null &
  echo $! >"$pf"
  "$PY" - "$ISSUER_PORT" <<'PYEOF'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/.well-known/jwks.json"
for _ in range(100):
    try:
        urllib.request.urlopen(url, timeout=1).read()
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(f"tarjotin: the development token issuer did not answer at {url}")
PYEOF
}

start_gateway() {
  local pf="$RUN/pids/gateway.pid"
  alive "$pf" && return 0
  render_nginx
  setsid "$NGINX" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" >>"$LOG/gateway.log" 2>&1 </dev/null &
  echo $! >"$pf"
}

poll_ready() {  # NAME=URL ...: wait until each answers ready (or degraded), 90 s in all
  "$PY" - "$@" <<'PYEOF'
import json, sys, time, urllib.request
checks = [tuple(item.split("=", 1)) for item in sys.argv[1:]]
deadline = time.time() + 90
for name, url in checks:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if json.load(r).get("status") in ("ready", "degraded"):
                    break
        except Exception:
            pass
        if time.time() > deadline:
            sys.exit(f"tarjotin: {name} not ready at {url} after 90 s; see the logs under the run directory")
        time.sleep(0.3)
PYEOF
}

wait_ready() {  # every service through the gateway, and each reporting reader on its own port
  local s i urls=()
  declare -A prefix=([catalogue]=catalogue [enrolment]=enrolments [billing]=billing [reporting]=reports)
  for s in "${SERVICES[@]}"; do urls+=("$s=http://127.0.0.1:$GATEWAY_PORT/api/${prefix[$s]}/ready"); done
  for ((i = 1; i <= READERS; i++)); do urls+=("reporting reader$i=http://127.0.0.1:$(reader_port "$i")/ready"); done
  poll_ready "${urls[@]}"
}

ready_url() {  # SERVICE ROLE: where the process for them answers /ready on its own port
  local role port
  role=$(role_of "$2")
  case $role in
    reader*) port=$(reader_port "${role#reader}") ;;
    api | all) port=$(port_of "$1") || exit 1 ;;
    *) die "$1 $role serves no HTTP: there is no /ready to wait for" ;;
  esac
  echo "http://127.0.0.1:$port/ready"
}

up() {
  bash scripts/bootstrap.sh venv
  bash scripts/bootstrap.sh rabbitmq
  bash scripts/bootstrap.sh nginx
  if [ "$DB" = postgres ]; then bash scripts/bootstrap.sh postgres; create_pg_databases; fi
  mkdir -p "$RUN" "$LOG" "$TARJOTIN_DATA_DIR"
  local s
  for s in "${SERVICES[@]}"; do
    rm -rf "$RUN/metrics/$s"; mkdir -p "$RUN/metrics/$s"
    # shellcheck disable=SC2046
    env $(service_env "$s") "$PY" -m "services.$s" migrate >>"$LOG/$s-migrate.log" 2>&1 \
      || die "migrating $s failed; see $LOG/$s-migrate.log"
  done
  start_issuer
  # Workers first: they declare their queues, so nothing published is unroutable.
  for s in "${SERVICES[@]}"; do start_one "$s" worker; done
  if [ "$PROCESSES" = split ]; then for s in "${SERVICES[@]}"; do start_one "$s" api; done; fi
  local i
  for ((i = 1; i <= READERS; i++)); do start_one reporting "reader$i"; done
  start_gateway
  wait_ready || { status; exit 1; }
  if [ "${TARJOTIN_DEMO:-1}" = 1 ]; then
    say "loading demo data"
    "$PY" scripts/demo.py --gateway "http://127.0.0.1:$GATEWAY_PORT" >>"$LOG/demo.log" 2>&1 \
      || die "loading demo data failed; see $LOG/demo.log"
  fi
  local readers_note=""
  [ "$READERS" = 0 ] || readers_note=", $READERS read-only reporting API process(es)"
  cat <<MSG

Tarjotin is running ($DB databases, $PROCESSES processes$readers_note, logs in $LOG):
  Gateway and API index   http://127.0.0.1:$GATEWAY_PORT/docs
  Catalogue               http://127.0.0.1:$GATEWAY_PORT/api/catalogue/offerings
  Enrolments              http://127.0.0.1:$GATEWAY_PORT/api/enrolments
  Billing                 http://127.0.0.1:$GATEWAY_PORT/api/billing/commitments
  Reports                 http://127.0.0.1:$GATEWAY_PORT/api/reports/participants
  Metrics (per service)   http://127.0.0.1:$GATEWAY_PORT/api/enrolments/metrics
  Tokens (development)    http://127.0.0.1:$ISSUER_PORT/token?role=network_admin
                          (or: .venv/bin/python -m shared.devissuer token --role counsellor --institution kpedu)
  RabbitMQ                amqp://127.0.0.1:5672 (management UI, if enabled: http://127.0.0.1:15672)
Stop it with: make stop
MSG
}

down() {  # every process with a pid file: TERM to all at once, then KILL what is left after 10 s
  local pf pid i left pids=()
  for pf in "$RUN"/pids/*.pid; do
    [ -e "$pf" ] || continue
    if alive "$pf"; then
      pid=$(cat "$pf")
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$pf"
  done
  for ((i = 0; i < 100; i++)); do  # they shut down side by side: the slowest one sets the pace
    left=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  say "stopped"
}

ports() {
  local s i
  echo "gateway $GATEWAY_PORT"
  echo "issuer $ISSUER_PORT"
  for s in "${SERVICES[@]}"; do echo "$s $(port_of "$s")"; done
  for ((i = 1; i <= READERS; i++)); do echo "reader$i $(reader_port "$i")"; done
}

status() {
  local f
  for f in "$RUN"/pids/*.pid; do
    [ -e "$f" ] || { say "nothing running"; return 0; }
    if alive "$f"; then echo "$(basename "$f" .pid) running (pid $(cat "$f"))"; else echo "$(basename "$f" .pid) DEAD"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  ports) ports ;;
  start)
    url=
    if [ -n "${4:-}" ]; then
      [ "$4" = --wait ] || die "start takes SERVICE ROLE [--wait], not $4"
      url=$(ready_url "$2" "$3") || exit 1
    fi
    start_one "$2" "$3"
    if [ -n "$url" ]; then poll_ready "$2 $3=$url"; fi ;;
  stop) stop_one "$2" "$3" ;;
  kill) stop_one "$2" "$3" KILL ;;
  *) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 2 ;;  # the header comment: usage and settings
esac
