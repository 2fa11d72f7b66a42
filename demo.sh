#!/usr/bin/env bash
# The main job on a local demo topology: a 1+3 MariaDB sandbox, its topology, a graceful takeover
# with its live phases and timeline, and the new topology. Installs mariadb-server when missing.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  echo "mariadbd not found: installing mariadb-server (needs root)"
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y mariadb-server
fi
cargo run --release --quiet -- demo --dir sandbox-demo "$@"
