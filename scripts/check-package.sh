#!/usr/bin/env bash
# Checks the xbar .deb's metadata and file list with dpkg-deb --info / --contents.
#   check-package.sh PATH.deb              check a package built by scripts/package.sh
#   check-package.sh --build-dir BUILD     cpack BUILD (already built) into a temporary
#                                          directory and check that (ctest: package_contents)
# Prints one line per check and "N passed, N failed"; exits 1 if any check failed.
set -euo pipefail

tmp=""
cleanup() { [ -z "$tmp" ] || rm -rf "$tmp"; }
trap cleanup EXIT

if [ "${1:-}" = "--build-dir" ]; then
  build=$(cd "${2:?--build-dir needs a directory}" && pwd)
  tmp=$(mktemp -d)
  if ! cpack --config "$build/CPackConfig.cmake" -B "$tmp" >"$tmp/cpack.log" 2>&1; then
    cat "$tmp/cpack.log" >&2
    echo "check-package: cpack failed" >&2
    exit 1
  fi
  deb=$(find "$tmp" -maxdepth 1 -name 'xbar_*.deb' | head -n1)
else
  deb=${1:?usage: check-package.sh PATH.deb | --build-dir BUILD}
fi
[ -f "$deb" ] || { echo "check-package: no package: ${deb:-none made}" >&2; exit 1; }

info=$(dpkg-deb --info "$deb")
contents=$(dpkg-deb --contents "$deb")
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles 2>/dev/null || true)

passed=0
failed=0
check() {  # check NAME COMMAND...
  local name=$1
  shift
  if "$@"; then
    echo "  ok   $name"
    passed=$((passed + 1))
  else
    echo "  FAIL $name"
    failed=$((failed + 1))
  fi
}
field() { sed -n "s/^ $1: //p" <<<"$info" | grep -qE "$2"; }
# A file list line: "-rwxr-xr-x root/root 123 2024-01-01 00:00 ./usr/bin/xbard".
has() { grep -qE "^$1 root/root .* \./${2#/}\$" <<<"$contents"; }

echo "check-package: $deb"
check "Package: xbar" field Package "^xbar$"
check "Version: project version" field Version "^[0-9]+\.[0-9]+\.[0-9]+"
check "Architecture: $(dpkg --print-architecture)" field Architecture "^$(dpkg --print-architecture)$"
# dpkg-shlibdeps: the libraries the binaries link are in Depends.
for lib in libc6 libstdc\\+\\+6 "libgrpc\\+\\+" libprotobuf libusb-1.0-0 libyaml-cpp libsqlite3 libcairo2 libsndfile1; do
  check "Depends: ${lib//\\/}" field Depends "(^|, )${lib}"
done
check "Recommends: systemd, udev, fonts-dejavu-core" field Recommends "systemd, udev, fonts-dejavu-core"
for script in postinst prerm postrm; do
  check "maintainer script $script" grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +\* +$script " <<<"$info"
done
check "conffile /etc/xbar/xbard.yaml" grep -qx /etc/xbar/xbard.yaml <<<"$conffiles"

for bin in xbard xbarctl xbar-fwsim; do
  check "/usr/bin/$bin (0755)" has -rwxr-xr-x "/usr/bin/$bin"
done
check "/etc/xbar/xbard.yaml" has -rw-r--r-- /etc/xbar/xbard.yaml
check "systemd unit" has -rw-r--r-- /usr/lib/systemd/system/xbard.service
check "sysusers.d entry" has -rw-r--r-- /usr/lib/sysusers.d/xbar.conf
check "udev rule" has -rw-r--r-- /usr/lib/udev/rules.d/70-xbar.rules
check "chip profiles" has -rw-r--r-- /usr/share/xbar/profiles/typical.yaml
check "README" has -rw-r--r-- /usr/share/doc/xbar/README.md
check "docs" has -rw-r--r-- /usr/share/doc/xbar/docs/api.md
check "example model" has -rw-r--r-- /usr/share/doc/xbar/examples/example-model.json
# Nothing from the build or test tree: only these top-level directories.
only_etc_usr() { ! grep -vE " \./((etc|usr)(/.*)?)?$" <<<"$contents"; }
no_test_files() { ! grep -qE "_test|_bench|gtest" <<<"$contents"; }
check "only etc/ and usr/" only_etc_usr
check "no tests or benchmarks" no_test_files

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
