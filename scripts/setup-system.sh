#!/usr/bin/env bash
# System packages shoppulse needs, installed when missing: one script for `make` and `.ci/run`.
#
#   scripts/setup-system.sh python   python3 with venv (before the virtualenv is made)
#   scripts/setup-system.sh demo     what `make demo` needs
#   scripts/setup-system.sh test     what the tests need: promtool/prometheus, amtool/alertmanager,
#                                    docker-compose (config check only, no daemon), chromium
#
# Installs with apt-get when it can (root, or sudo without a password); otherwise stops with
# one line naming the packages to install. Nothing is skipped: a test that needs a tool fails.
set -euo pipefail

PY="${PY:-python3}"
profile="${1:-test}"

# "check-command package" pairs per profile; a check is a command name or `py:<module>`.
python_needs=("py:ensurepip python3-venv")
demo_needs=("${python_needs[@]}")
test_needs=("${python_needs[@]}"
  "promtool prometheus" "prometheus prometheus"
  "amtool prometheus-alertmanager" "prometheus-alertmanager prometheus-alertmanager"
  "docker-compose docker-compose"
  "chromium chromium" "chromedriver chromium-driver")

case "$profile" in
  python) needs=("${python_needs[@]}") ;;
  demo) needs=("${demo_needs[@]}") ;;
  test) needs=("${test_needs[@]}") ;;
  *) echo "usage: $0 python|demo|test" >&2; exit 2 ;;
esac

present() {
  case "$1" in
    py:*) "$PY" -c "import ${1#py:}" >/dev/null 2>&1 ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for pair in "${needs[@]}"; do
  read -r check pkg <<<"$pair"
  if ! present "$check" && [[ " ${missing[*]-} " != *" $pkg "* ]]; then
    missing+=("$pkg")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  SUDO=(none)
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "${SUDO[0]-}" = none ]; then
  echo "shoppulse: missing system packages; install them first: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "shoppulse: installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

still=()
for pair in "${needs[@]}"; do
  read -r check pkg <<<"$pair"
  present "$check" || still+=("$check")
done
if [ "${#still[@]}" -ne 0 ]; then
  echo "shoppulse: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
