#!/usr/bin/env bash
# Installs n8n (default 1.82.3) from the npm registry into a cache directory outside the
# repository, for the n8n e2e test and for users who want to run the workflow locally.
# Idempotent: a finished install (marked by a stamp file) is reused; a failed one is discarded.
# Prints the path of the n8n executable on success.
#
# Facts measured on this machine (issue #7): n8n's own `xlsx` dependency points off the npm
# registry, so it is overridden to the registry's 0.18.5; sqlite3's prebuilt binary cannot be
# downloaded, so it is built from source. 5 to 10 minutes on 2 cores, and 1.3 GB.
set -euo pipefail

version="${N8N_VERSION:-1.82.3}"
dest="${N8N_INSTALL_DIR:-${CACHE:-$HOME/.cache/adaptune}/n8n}"
bin="$dest/node_modules/.bin/n8n"
stamp="$dest/.installed-$version"

if [[ -f "$stamp" && -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: $tool not found; install Node.js 18+ and npm (Debian: apt-get install nodejs npm)" >&2
    exit 2
  fi
done

# Build in a sibling folder and rename at the end, so an interrupted install never looks done.
work="$dest.partial.$$"
trap 'rm -rf "$work"' EXIT
rm -rf "$work"
mkdir -p "$work"
cat >"$work/package.json" <<JSON
{
  "name": "adaptune-n8n",
  "private": true,
  "description": "n8n for adaptune's integration test (installed by scripts/install_n8n.sh)",
  "dependencies": { "n8n": "$version" },
  "overrides": { "xlsx": "0.18.5" }
}
JSON

echo "installing n8n $version into $dest (several minutes)" >&2
(
  cd "$work"
  npm install --no-audit --no-fund --loglevel=error >&2
  # npm install usually builds sqlite3 already when its prebuilt download fails; rebuild only
  # when the module does not load.
  node -e "require('sqlite3')" 2>/dev/null \
    || npm rebuild sqlite3 --build-from-source --loglevel=error >&2
)
"$work/node_modules/.bin/n8n" --version >/dev/null

rm -rf "$dest"
mv "$work" "$dest"
trap - EXIT
touch "$stamp"
echo "$bin"
