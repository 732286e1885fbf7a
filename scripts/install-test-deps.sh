#!/usr/bin/env bash
# Installs what the real-client tests use: kcat (librdkafka) from Debian, confluent-kafka
# (librdkafka) and kafka-python for Python, iproute2 for the network-namespace tests, and cargo-nextest if missing. Idempotent; needs root for apt.
set -euo pipefail

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "install-test-deps: please install: ${need_apt[*]}" >&2
  fi
fi

if ! python3 -c 'import confluent_kafka' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'confluent-kafka==2.*'
fi

if ! python3 -c 'import kafka' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'kafka-python==3.*'
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
