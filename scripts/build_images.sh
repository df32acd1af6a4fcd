#!/usr/bin/env bash
# Build (and smoke-run) the project's images with buildah, as root, on a machine without a container
# registry: the base is made locally from Debian packages with mmdebstrap.
#
#   bash scripts/build_images.sh base         # localhost/oreal-base:bookworm (python3 + venv, Debian 12)
#   bash scripts/build_images.sh operator     # localhost/oreal-operator:<version> from images/operator/Dockerfile
#   bash scripts/build_images.sh worker-cpu   # localhost/oreal-worker:<version>-cpu (torch CPU, no vLLM/DeepSpeed)
#   bash scripts/build_images.sh smoke        # run the operator image: --help, as a non-root uid
#
# Each build takes BASE=localhost/oreal-base:bookworm instead of the Dockerfile's default (a public
# image the machine cannot pull). To build for a cluster instead: see README "Images".
# Needs buildah and mmdebstrap (scripts/install_system_tools.sh). Storage: vfs, isolation: chroot (no
# overlayfs or user namespaces needed). Prints "<step>: N s" for each step it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs} BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
SUITE=${OREAL_BASE_SUITE:-bookworm}
BASE=localhost/oreal-base:$SUITE
OPERATOR=localhost/oreal-operator:$VERSION
WORKER_CPU=localhost/oreal-worker:$VERSION-cpu
CACHE=.tools/images
SOURCE=${OREAL_IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || true)}
# The local torch CPU wheel (this machine keeps it in pip's find-links folder, /opt/wheels).
WHEELS=${OREAL_WHEELS:-/opt/wheels}
mkdir -p "$CACHE"

timed() {  # timed NAME CMD...: run CMD, print "NAME: N s"
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "build_images: $name: $((SECONDS - start)) s"
}

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# The base recipe; its hash names the cached root filesystem and labels the image, so a changed
# recipe (or this machine's CA bundle) makes a new base.
BASE_PACKAGES=python3,python3-venv,ca-certificates
recipe_hash() {
  { echo "$SUITE $BASE_PACKAGES"; cat /etc/ssl/certs/ca-certificates.crt; } | sha256sum | cut -c1-16
}

build_base() {
  local hash tar ctr
  hash=$(recipe_hash)
  if image_exists "$BASE" &&
    [ "$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "oreal.base.recipe"}}' "$BASE")" = "$hash" ]; then
    echo "build_images: $BASE is up to date"
    return
  fi
  tar=$CACHE/base-$SUITE-$hash.tar
  if [ ! -s "$tar" ]; then
    rm -f "$CACHE"/base-"$SUITE"-*.tar
    # minbase + python3 and its venv module; no docs, man pages or locales.
    mmdebstrap --variant=minbase --include="$BASE_PACKAGES" \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --aptopt='Acquire::Retries "3"' \
      "$SUITE" "$tar.part" http://deb.debian.org/debian
    mv "$tar.part" "$tar"
  fi
  ctr=$(buildah from scratch)
  buildah add "$ctr" "$tar" / >/dev/null
  # This machine reaches PyPI through a TLS-inspecting proxy: the base trusts the host's CA bundle,
  # as a company's base image trusts its proxy. Only this local test base does; the Dockerfiles don't.
  buildah copy "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label oreal.base.recipe="$hash" --cmd '["python3"]' "$ctr"
  buildah commit -q --rm "$ctr" "$BASE" >/dev/null
}

build_operator() {
  image_exists "$BASE" || build_base
  buildah bud -q --layers=false -f images/operator/Dockerfile \
    --build-arg BASE="$BASE" --build-arg VERSION="$VERSION" --build-arg SOURCE="$SOURCE" \
    -t "$OPERATOR" . >/dev/null
  prune
}

build_worker_cpu() {
  image_exists "$BASE" || build_base
  local wheel
  wheel=$(find "$WHEELS" -maxdepth 1 -name 'torch-2.13.0+cpu-*.whl' 2>/dev/null | head -1)
  [ -n "$wheel" ] || { echo "build_images: no torch 2.13.0 CPU wheel in $WHEELS (OREAL_WHEELS)" >&2; return 1; }
  buildah bud -q --layers=false -f images/worker/Dockerfile \
    --build-arg BASE="$BASE" --build-arg VERSION="$VERSION" --build-arg SOURCE="$SOURCE" \
    --build-arg EXTRAS=worker --build-arg TORCH="torch==2.13.0+cpu" \
    --build-arg TORCH_PIP_ARGS="--find-links /wheels" --volume "$(cd "$WHEELS" && pwd):/wheels:ro" \
    -t "$WORKER_CPU" . >/dev/null
  prune
}

# A rebuild leaves the previous image untagged; vfs stores every image whole, so drop those.
prune() { buildah rmi --prune >/dev/null 2>&1 || true; }

smoke() {
  local ctr out uid
  ctr=$(buildah from "$OPERATOR")
  out=$(buildah run "$ctr" -- python -m oreal_operator --help 2>&1) || out="FAILED: $out"
  uid=$(buildah run "$ctr" -- id -u 2>&1) || uid="FAILED: $uid"
  buildah rm "$ctr" >/dev/null
  grep -q OREAL_WORKER_IMAGE <<<"$out" || { echo "build_images: --help: $out" >&2; return 1; }
  [[ $uid =~ ^[0-9]+$ && $uid != 0 ]] || { echo "build_images: the operator image runs as uid $uid" >&2; return 1; }
  echo "build_images: $OPERATOR runs --help as uid $uid"
}

for step in "${@:-base operator smoke}"; do
  for one in $step; do
    case $one in
      base) timed base build_base ;;
      operator) timed operator build_operator ;;
      worker-cpu) timed worker-cpu build_worker_cpu ;;
      smoke) timed smoke smoke ;;
      *) echo "usage: $0 [base|operator|worker-cpu|smoke]..." >&2; exit 2 ;;
    esac
  done
done
