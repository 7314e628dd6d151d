#!/usr/bin/env bash
# Build DTLSSocket (aiocoap's DTLS-PSK transport, compiled from source) into a Python environment,
# and install libcoap's coap-client-openssl, the independent DTLS client the CoAP tests use.
# Usage: scripts/install_dtls.sh [python]   (default: $PYTHON or python3; run as root for apt-get)
set -euo pipefail

PY="${1:-${PYTHON:-python3}}"

missing=()
# DTLSSocket runs tinydtls' autotools build; the wheel build needs a compiler and Python's headers.
for pkg in autoconf automake libtool gcc make; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ! "$PY" -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    missing+=(python3-dev)
fi
command -v coap-client-openssl >/dev/null 2>&1 || missing+=(libcoap3-bin)
if ((${#missing[@]})); then
    echo "install_dtls: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if "$PY" -c 'from DTLSSocket import dtls' 2>/dev/null; then
    echo "install_dtls: DTLSSocket already importable by $PY"
else
    "$PY" -m pip install --quiet DTLSSocket
fi
"$PY" -c 'from aiocoap.defaults import dtls_missing_modules as m; missing = m(); assert not missing, missing'
echo "install_dtls: aiocoap's DTLS server transport is usable with $PY"
