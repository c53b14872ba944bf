#!/bin/sh
# Lays out the build context of Dockerfile.example in DIR (created if missing). Nothing is
# pulled: the images are built FROM scratch out of what this machine has.
#   DIR/defender      the static defender (from $DEFENDER, default: the musl release build)
#   DIR/rootfs/       the sample app's userland: static busybox, Debian's wget and its libraries
#   DIR/entrypoint.sh the sample's entry script
#   DIR/policy.json   the sample's policy (task-definitions/)
# Needs: busybox-static, wget (Debian packages).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
defender=${DEFENDER:-$repo/target/x86_64-unknown-linux-musl/release/defender}

mkdir -p "$dir/rootfs/bin" "$dir/rootfs/usr/bin" "$dir/rootfs/tmp"
chmod 1777 "$dir/rootfs/tmp"
# The defender copies itself: the same command a Fargate carrier container runs.
"$defender" install "$dir"
cp /bin/busybox "$dir/rootfs/bin/busybox"
# Debian's wget, not busybox's: a static glibc program cannot resolve names without glibc's
# shared libraries, and the sample must really ask DNS.
cp /usr/bin/wget "$dir/rootfs/usr/bin/wget"
for lib in $(ldd /usr/bin/wget | grep -o '/[^ ]*'); do
  mkdir -p "$dir/rootfs$(dirname "$lib")"
  cp -L "$lib" "$dir/rootfs$lib"
done
cp "$here/entrypoint.sh" "$dir/entrypoint.sh"
cp "$repo/task-definitions/twistlock-fargate-task.policy.json" "$dir/policy.json"
