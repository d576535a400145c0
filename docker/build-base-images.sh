#!/usr/bin/env bash
# Build the base images of the deployment test from Debian packages, for hosts that cannot pull
# from a container registry (docker/test/run.sh calls this; see docs/deployment.md).
#
#   docker/build-base-images.sh [SUITE]      # SUITE: a Debian suite, default: the host's
#
# Two images, imported into podman (or docker, with ENGINE=docker):
#   localhost/blockreg-base:SUITE      python3 + venv: the BASE_IMAGE of docker/Dockerfile
#   localhost/blockreg-services:SUITE  redis-server and PostgreSQL behind docker/test/entrypoint.sh,
#                                      standing in for the official redis and postgres images
#
# The base image trusts the host's CA bundle (behind a TLS-intercepting proxy, pip in the image
# build needs the proxy's CA the host already trusts; elsewhere it is Debian's own bundle).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
engine=${ENGINE:-podman}
suite=${1:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
host_ca=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ca_hook=()
if [[ -s $host_ca ]]; then
    ca_hook=(--customize-hook="copy-in $host_ca /etc/ssl/certs")
fi

mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates "${ca_hook[@]}" \
    "$suite" "$work/base.tar" "$mirror"
"$engine" import --change 'CMD ["python3"]' "$work/base.tar" "localhost/blockreg-base:$suite"

# policy-rc.d keeps the packages' scripts from starting daemons. The cluster that postgresql's
# postinst creates is removed: the entrypoint makes its own in PGDATA, and Debian's pg_isready
# would otherwise ask the port of that cluster (5433 when the build host runs PostgreSQL itself).
mmdebstrap --variant=minbase --include=redis-server,postgresql \
    --customize-hook='rm -rf "$1"/etc/postgresql/* "$1"/var/lib/postgresql/*' \
    --customize-hook="copy-in $here/test/entrypoint.sh /usr/local/bin" \
    --customize-hook='chroot "$1" chmod 755 /usr/local/bin/entrypoint.sh' \
    --customize-hook='mkdir -p "$1/data"' \
    "$suite" "$work/services.tar" "$mirror"
# SIGINT: PostgreSQL's fast shutdown, as the official image (SIGTERM waits for every client to
# disconnect, i.e. for the kill); redis-server saves and exits on either
"$engine" import --change 'ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]' --change 'WORKDIR /data' \
    --change 'STOPSIGNAL SIGINT' \
    "$work/services.tar" "localhost/blockreg-services:$suite"
