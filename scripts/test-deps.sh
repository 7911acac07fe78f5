#!/usr/bin/env bash
# Installs and starts what the tests need beyond Python packages: Debian's Chromium (the
# browser tests; Playwright cannot download its own here) and Redis. Idempotent.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || [ -n "${PLAYWRIGHT_CHROMIUM:-}" ] || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "test-deps: please install: ${need[*]} (e.g. sudo apt-get install -y ${need[*]})" >&2
    exit 1
  fi
fi

# The shared Redis on 6379: the multi-process tests start their own, but an operator's
# `make test` should find the usual one running too.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "test-deps: starting redis-server on 127.0.0.1:6379"
  mkdir -p /tmp/redis-hypertalk
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/redis-hypertalk --logfile /tmp/redis-hypertalk/redis.log
fi
