#!/usr/bin/env bash
# Builds the local redis-server image without any image registry: the host's
# redis-server binary, every shared library it links, and the dynamic loader,
# copied into a FROM-scratch image (about 18 MB, Redis as packaged by the host).
#
# Usage: bash docker/build-local-image.sh [--force]
#   QUORUMLOCK_REDIS_IMAGE  tag to build (default quorumlock/redis:local)
#   REDIS_SERVER            binary to package (default /usr/bin/redis-server)
#
# Idempotent: when an image with this tag already packages the very same
# binary (sha256 label), nothing is rebuilt. --force rebuilds anyway.
# Prints the tag on stdout as its last line; messages go to stderr.
set -euo pipefail

tag="${QUORUMLOCK_REDIS_IMAGE:-quorumlock/redis:local}"
# Users set QUORUMLOCK_REDIS_IMAGE=redis:7 for the registry image; this script
# only ever builds the local one, so never overwrite an official tag.
say() { printf 'build-local-image: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

case "$tag" in
  redis:*|redis|docker.io/*)
    say "QUORUMLOCK_REDIS_IMAGE=$tag names a registry image; building quorumlock/redis:local instead"
    tag="quorumlock/redis:local" ;;
esac
bin="${REDIS_SERVER:-/usr/bin/redis-server}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (docker info failed)"

if [[ ! -x "$bin" ]]; then
  [[ "$bin" == /usr/bin/redis-server ]] || die "$bin is not an executable"
  command -v apt-get >/dev/null || die "$bin is missing and apt-get is not available: install redis-server"
  say "redis-server is missing: installing it with apt-get"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
fi
[[ -x "$bin" ]] || die "$bin is still missing"

sum=$(sha256sum "$(readlink -f "$bin")" | cut -d' ' -f1)
if [[ $force -eq 0 ]]; then
  have=$(docker image inspect -f '{{index .Config.Labels "quorumlock.redis-server.sha256"}}' "$tag" 2>/dev/null || true)
  if [[ "$have" == "$sum" ]]; then
    say "$tag is up to date ($("$bin" --version | cut -d' ' -f3))"
    echo "$tag"
    exit 0
  fi
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs"

# Dereference: /usr/bin/redis-server is a symlink to redis-check-rdb and Redis
# picks its mode from argv[0], so the copy must be named redis-server.
cp -L "$bin" "$ctx/rootfs/redis-server"

# Every absolute path ldd prints: the libraries ("name => /path (addr)") and
# the dynamic loader ("/lib64/ld-linux-x86-64.so.2 (addr)"), at the same
# paths, dereferenced. linux-vdso has no path and is skipped.
ldd "$bin" >"$ctx/ldd.txt" 2>&1 || die "ldd $bin failed: $(cat "$ctx/ldd.txt")"
libs=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' "$ctx/ldd.txt" | sort -u)
[[ -n "$libs" ]] || die "ldd found no libraries for $bin (is it a dynamic executable?)"
n=0
for lib in $libs; do
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
  n=$((n + 1))
done

cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
LABEL org.opencontainers.image.title="quorumlock redis-server (local, from the host binary)" \\
      quorumlock.redis-server.sha256="$sum"
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/redis-server"]
CMD ["--bind","0.0.0.0","--protected-mode","no","--save","","--appendonly","no"]
DOCKERFILE

say "building $tag from $bin ($("$bin" --version | cut -d' ' -f3), $n libraries incl. loader)"
docker build -q -t "$tag" "$ctx" >/dev/null
say "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}'))"
echo "$tag"
