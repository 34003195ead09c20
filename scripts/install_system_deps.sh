#!/usr/bin/env bash
# Install the Debian packages the tests need, only when missing.
set -euo pipefail

missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# the browser tests drive Debian's Chromium; no test tool downloads a browser
[ -x /usr/bin/chromium ] || missing+=(chromium)
# the push tests publish to a real MQTT broker
[ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
else
    sudo=
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}"
}
