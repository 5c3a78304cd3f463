#!/usr/bin/env bash
# Installs the pinned contract tools (tools/package-lock.json: buf, the Kotlin compiler) into tools/node_modules
# with `npm ci`, unless they are already installed from this very lockfile. Prints nothing when nothing is to do.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.saywell-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" && -x node_modules/.bin/buf ]]; then
    exit 0
fi
command -v npm >/dev/null || { echo "tools/install.sh: npm is needed (Debian: apt-get install nodejs npm)" >&2; exit 1; }
echo "tools/install.sh: npm ci (buf, kotlin-compiler) in $(pwd)" >&2
# --ignore-scripts: nothing from the registry runs at install time (buf's launcher finds its platform binary
# without its postinstall step).
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
echo "$want" > "$stamp"
