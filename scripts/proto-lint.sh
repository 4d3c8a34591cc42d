#!/usr/bin/env bash
# Lints the gRPC API (proto/xbar/v1) with buf: the STANDARD style rules less the documented
# exceptions, and a comment on every service, RPC, message, field and enum value
# (proto/buf.yaml). buf comes from the npm registry at the version pinned in
# tools/proto-lint/package-lock.json. Fails (never skips) when node/npm or the registry is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tool_dir=tools/proto-lint

fail() {
  echo "proto-lint: FAILED: $*" >&2
  exit 1
}

command -v node >/dev/null 2>&1 ||
  fail "node not found: install Node.js (>= 18) and npm (bash scripts/install-deps.sh)"
command -v npm >/dev/null 2>&1 || fail "npm not found: install npm (bash scripts/install-deps.sh)"

echo "== proto lint (buf, pinned in $tool_dir/package-lock.json)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# npm ci installs exactly the lockfile. Bounded retries, so an unreachable registry fails in
# about a minute instead of hanging; the packages may also come from npm's local cache.
if ! (cd "$tool_dir" && npm ci --no-audit --no-fund --fetch-retries=1 --fetch-timeout=30000 \
      >"$log" 2>&1); then
  cat "$log" >&2
  fail "npm ci in $tool_dir did not install buf (is the npm registry reachable?)"
fi
buf="$root/$tool_dir/node_modules/.bin/buf"
[ -x "$buf" ] || fail "npm ci succeeded but $buf is missing"
version=$(cd "$tool_dir" && npx --no-install buf --version 2>/dev/null) ||
  fail "buf does not run (no prebuilt binary for $(uname -sm) in the lockfile?)"

if ! (cd "$tool_dir" && npx --no-install buf lint "$root/proto"); then
  fail "buf $version found the problems above in proto/ (rules: proto/buf.yaml)"
fi
echo "proto-lint: OK (buf $version, $(find proto -name "*.proto" | wc -l) files)"
