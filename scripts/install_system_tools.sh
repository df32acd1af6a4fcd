#!/usr/bin/env bash
# Debian packages the tests use beyond Python: buildah and mmdebstrap (tests/images build and run the
# images from images/*/Dockerfile), and prometheus (promtool for the alert rules' unit tests, and the
# Prometheus 2.42 server the dashboard tests query). Idempotent: installs only what is missing.
# Needs root and apt (Debian 12 here); elsewhere it says what is missing and exits 0, and the tests
# that need a tool fail naming this script.
set -euo pipefail

PACKAGES=(buildah mmdebstrap prometheus)
COMMANDS=(buildah mmdebstrap promtool)

missing=()
for i in "${!COMMANDS[@]}"; do
  command -v "${COMMANDS[$i]}" >/dev/null 2>&1 || missing+=("${PACKAGES[$i]}")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_system_tools: buildah, mmdebstrap and prometheus already installed"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_tools: missing ${missing[*]}; install them as root with apt-get (Debian)" >&2
  exit 0
fi
echo "install_system_tools: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: no podman/slirp stacks for buildah, no node exporter for prometheus.
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
# The package starts no server here (no systemd); the tests start their own Prometheus.
echo "install_system_tools: installed ${missing[*]}"
