#!/usr/bin/env bash
# Makes sure the Fashion-MNIST IDX files (Debian package dataset-fashion-mnist) are on this machine.
# As root: apt-get install. Otherwise: apt-get download + dpkg -x into the user cache that
# nachos_tf.data searches (~/.cache/nachos-tf/fashion-mnist). NACHOS_DATA set: nothing to do.
set -euo pipefail
SYS=/usr/share/datasets/fashion-mnist
CACHE="${HOME}/.cache/nachos-tf/fashion-mnist"
have() { [ -f "$1/train-images-idx3-ubyte.gz" ] && [ -f "$1/t10k-labels-idx1-ubyte.gz" ]; }
if [ -n "${NACHOS_DATA:-}" ]; then exit 0; fi
if have "$SYS" || have "$CACHE$SYS"; then exit 0; fi
echo "Fashion-MNIST not found: installing the Debian package dataset-fashion-mnist ..."
if [ "$(id -u)" = "0" ]; then
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
else
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null)
  mkdir -p "$CACHE"
  dpkg -x "$tmp"/dataset-fashion-mnist_*.deb "$CACHE"
fi
have "$SYS" || have "$CACHE$SYS" || { echo "error: could not install Fashion-MNIST (dataset-fashion-mnist)" >&2; exit 1; }
echo "Fashion-MNIST ready."
