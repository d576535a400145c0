#!/usr/bin/env bash
# The deployment test: build docker-compose.yml's images, bring the stack up with podman, run the
# demo job through the published port, check its result, check that a killed worker is restarted
# and serves the next job, then take everything down (volumes included). One command, as root:
#
#   docker/test/run.sh [--install]   # ~4-8 min; --install first installs what is missing
#
# Needs, as root: podman, runc, iptables and mmdebstrap (Debian), podman-compose (PyPI), and the
# package installed on the host (`blockreg demo` runs here); --install installs the first ones
# with apt-get and pip. See docs/deployment.md, "Deployment test", for the last result. Nothing is
# pulled from a registry: the base images come from Debian packages (docker/build-base-images.sh;
# REBUILD_BASE=1 rebuilds them).
#
# Podman 4.3 (Debian 12) has no systemd here to run health checks, and podman-compose then ignores
# `depends_on` conditions; so the stack comes up in the order the conditions describe, each stage
# waiting until the compose file's own health check passes (`podman healthcheck run`), or, for the
# one-shot `migrate`, until it exited 0.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

if [[ ${1:-} == --install ]]; then
    missing=()
    for tool in podman runc iptables mmdebstrap; do
        command -v "$tool" > /dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" \
            uidmap slirp4netns fuse-overlayfs
    fi
    command -v podman-compose > /dev/null || python3 -m pip install -q "podman-compose>=1.6,<2"
elif [[ -n ${1:-} ]]; then
    echo "usage: $0 [--install]" >&2; exit 2
fi
for tool in podman podman-compose mmdebstrap blockreg; do
    command -v "$tool" > /dev/null || { echo "$tool is missing (see --install)" >&2; exit 2; }
done

project=${BLOCKREG_TEST_PROJECT:-blockreg-deploytest}
suite=${BLOCKREG_TEST_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}
port=${BLOCKREG_PORT:-18750}
frames=${DEMO_FRAMES:-12}
max_rmse=${MAX_RMSE_PX:-0.5}
# what the images are built from: a commit (default HEAD, what the recorded result names) or
# `worktree` (the checkout with its uncommitted changes)
source=${BLOCKREG_TEST_SOURCE:-HEAD}
work=$(mktemp -d /tmp/blockreg-deploytest.XXXXXX)
export BLOCKREG_TEST_DATA=$work/share BLOCKREG_TEST_SUITE=$suite BLOCKREG_PORT=$port
# the test's own podman settings: no default rlimits (setting them is not permitted in nested
# containers) and runc (crun refuses the hybrid cgroup v1/v2 layout of such hosts)
export CONTAINERS_CONF=$work/containers.conf
printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' > "$CONTAINERS_CONF"
mkdir -p -m 1777 "$work/share" "$work/share/data"   # containers run as 1000:1000, the host as root

t0=$SECONDS
step() { printf '\n== %s (%d s)\n' "$*" $((SECONDS - t0)); }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
compose() {
    podman-compose -p "$project" -f docker-compose.yml -f docker/test/compose.override.yml "$@"
}
container() { echo "${project}_$1_1"; }

finish() {
    local rc=$?
    if ((rc != 0)); then
        mkdir -p "$work/logs"
        for c in $(podman ps -a --format '{{.Names}}' --filter "name=^${project}_"); do
            podman logs "$c" > "$work/logs/$c.log" 2>&1 || true
        done
        echo "logs of the containers: $work/logs" >&2
    fi
    if ! compose down -v > "$work/down.log" 2>&1; then
        echo "compose down failed: $work/down.log" >&2
        rc=1
    fi
    if ((rc == 0)); then
        cd / && rm -rf "$work"
    else
        echo "sources, build and demo logs: $work" >&2
    fi
    printf '\n%s after %d s\n' "$( ((rc == 0)) && echo PASSED || echo FAILED)" $((SECONDS - t0))
    exit "$rc"
}
trap finish EXIT

# wait_healthy SERVICE TIMEOUT_S: until the compose file's health check passes in the container
wait_healthy() {
    local c deadline=$((SECONDS + $2))
    c=$(container "$1")
    until podman healthcheck run "$c" > /dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$1 not healthy after $2 s"
        sleep 2
    done
    echo "$1 healthy"
}

step "base images"
if [[ ${REBUILD_BASE:-0} == 1 ]] || ! podman image exists "localhost/blockreg-base:$suite" \
        || ! podman image exists "localhost/blockreg-services:$suite"; then
    ENGINE=podman docker/build-base-images.sh "$suite" > "$work/base-images.log" 2>&1 \
        || fail "base images, see $work/base-images.log"
fi

mkdir "$work/src"
if [[ $source == worktree ]]; then
    step "snapshot of the working tree"
    # tracked and untracked, not ignored files as they are now, so edits during the run neither
    # change the images nor defeat the layer cache
    git ls-files -z --cached --others --exclude-standard \
        | tar --null -T - --ignore-failed-read -cf - 2> /dev/null | tar -xf - -C "$work/src"
else
    step "source: $source = $(git rev-parse --short "$source^{commit}")"
    git archive "$source" | tar -xf - -C "$work/src"
fi
cd "$work/src"

step "build the compose images on localhost/blockreg-base:$suite"
# one at a time, so the services sharing a target reuse the first one's layers
compose --parallel 1 build --build-arg "BASE_IMAGE=localhost/blockreg-base:$suite" \
    > "$work/build.log" 2>&1 || fail "build, see $work/build.log"

step "up: redis, postgres"
compose up -d --no-build redis postgres > "$work/up.log" 2>&1 || fail "up, see $work/up.log"
wait_healthy redis 60
wait_healthy postgres 60

step "up: migrate (one-shot)"
compose up -d --no-build --no-deps migrate >> "$work/up.log" 2>&1 || fail "up, see $work/up.log"
rc=$(podman wait "$(container migrate)")
((rc == 0)) || fail "migrate exited $rc: $(podman logs "$(container migrate)" 2>&1 | tail -n 5)"
echo "migrate exited 0"

step "up: dispatcher, coordinator, worker-cpu"
compose up -d --no-build --no-deps dispatcher coordinator worker-cpu >> "$work/up.log" 2>&1 \
    || fail "up, see $work/up.log"
wait_healthy coordinator 90
wait_healthy worker-cpu 90
wait_healthy dispatcher 90
health=$(python3 -c "import urllib.request; print(urllib.request.urlopen(
    'http://127.0.0.1:$port/api/v1/health', timeout=5).read().decode())") \
    || fail "no health through the published port $port"
echo "published port $port: $health"

step "API token (BLOCKREG_AUTH is on in compose)"
code=$(python3 -c "import urllib.request, urllib.error
try: print(urllib.request.urlopen('http://127.0.0.1:$port/api/v1/jobs', timeout=5).status)
except urllib.error.HTTPError as e: print(e.code)")
[[ $code == 401 ]] || fail "GET /api/v1/jobs without a token: HTTP $code, not 401"
echo "no token: HTTP 401"
token=$(podman exec "$(container coordinator)" blockreg user add deploytest 2> /dev/null | tail -n 1)
[[ -n $token ]] || fail "blockreg user add in the coordinator container printed no token"
export BLOCKREG_TOKEN=$token
echo "user deploytest added in the coordinator container"

# run_demo LABEL: the demo job through the published port; checks state and displacement error
run_demo() {
    local log=$work/demo-$1.log rmse motion
    timeout 600 blockreg demo --server "http://127.0.0.1:$port" --home "$work/share" \
        --frames "$frames" > "$log" 2>&1 || fail "demo ($1): $(tail -n 5 "$log")"
    grep -E '^(submitted|results|quality)' "$log"
    read -r rmse motion < <(sed -nE \
        's/.*RMSE at the grid nodes ([0-9.]+) px.*true motion ([0-9.]+) px.*/\1 \2/p' "$log")
    [[ -n ${rmse:-} ]] || fail "demo ($1): no quality line"
    python3 -c "import sys; sys.exit(not (float('$rmse') <= $max_rmse < float('$motion')))" \
        || fail "demo ($1): displacement RMSE $rmse px (limit $max_rmse, true motion $motion px)"
    echo "demo ($1): succeeded, displacement RMSE $rmse px <= $max_rmse px (true motion $motion px)"
}

step "demo job through http://127.0.0.1:$port"
run_demo first

step "restart policy: SIGKILL of the worker's main process"
worker=$(container worker-cpu)
restarts=$(podman inspect -f '{{.RestartCount}}' "$worker")
kill -KILL "$(podman inspect -f '{{.State.Pid}}' "$worker")"
deadline=$((SECONDS + 60))
until [[ $(podman inspect -f '{{.RestartCount}} {{.State.Running}}' "$worker") \
        == "$((restarts + 1)) true" ]]; do
    ((SECONDS < deadline)) || fail "worker not restarted within 60 s ($(podman inspect \
        -f '{{.State.Status}} restarts={{.RestartCount}}' "$worker"))"
    sleep 1
done
echo "worker restarted by podman (restart count $restarts -> $((restarts + 1)))"
wait_healthy worker-cpu 90
step "demo job on the restarted worker"
run_demo after-restart
# podman-compose stops all services at once, so a worker would lose Redis mid-shutdown and then
# hang until its 5 min grace is over; compose (docker) stops dependents first, as done here. An
# idle worker must stop within its 10 s soft shutdown; the others are only timed (10 s = killed).
step "stop: worker-cpu, dispatcher, coordinator (SIGTERM)"
for service in worker-cpu dispatcher coordinator; do
    started=$SECONDS
    compose stop "$service" > /dev/null 2>&1 || fail "stop $service"
    echo "$service stopped in $((SECONDS - started)) s"
    [[ $service != worker-cpu ]] || ((SECONDS - started < 30)) || fail "worker took > 30 s to stop"
done
step "down -v"
