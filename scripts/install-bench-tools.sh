#!/usr/bin/env bash
# The programs benchmarks/ runs besides Python, each from Debian's packages (never a binary or browser
# download): installed with apt-get where one is missing and this shell may install (root, or sudo
# without a password). Otherwise it says which to install and which benchmark reports itself unavailable
# until then; a benchmark missing its program says so in its JSON and the others run, so that is not a
# failure here.
set -uo pipefail

# program|Debian package|what runs it
TOOLS=(
  "wrk|wrk|evaluations_api.py throughput and ingest"
  "chromium|chromium|dashboard.py"
  "prometheus|prometheus|prometheus_panels.py"
  "promtool|prometheus|prometheus_panels.py"
)

missing_packages() {
  local entry program package
  for entry in "${TOOLS[@]}"; do
    IFS='|' read -r program package _ <<<"$entry"
    command -v "$program" >/dev/null 2>&1 || echo "$package"
  done | sort -u
}

packages=$(missing_packages)
as_root=()
can_install=no
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    can_install=yes
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo)
    can_install=yes
  fi
fi
if [ -n "$packages" ] && [ "$can_install" = yes ]; then
  echo "installing Debian's $(echo $packages)"
  "${as_root[@]}" apt-get update -qq || echo "apt-get update failed; trying the package lists this machine has"
  # One at a time: a package this system lacks must not keep the others out.
  for package in $packages; do
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null ||
      echo "apt-get install $package failed"
  done
fi

still_missing=0
for entry in "${TOOLS[@]}"; do
  IFS='|' read -r program package needed_by <<<"$entry"
  if command -v "$program" >/dev/null 2>&1; then
    echo "benchmarks: $program ready ($(command -v "$program"))"
  else
    still_missing=1
    echo "benchmarks: $program is missing, so $needed_by will report it unavailable;" \
      "install Debian's $package (as root: apt-get install $package)" >&2
  fi
done
if [ "$still_missing" -ne 0 ]; then
  echo "benchmarks: the other benchmarks are ready" >&2
fi
exit 0
