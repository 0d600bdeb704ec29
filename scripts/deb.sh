#!/bin/sh
# scripts/deb.sh - build dist/pop3d_VERSION_ARCH.deb (make deb).
#
# dpkg-buildpackage -us -uc -b in a fresh copy of the sources (tracked and
# new files, as a commit would hold them): it writes the .deb beside the
# tree it builds and leaves build products in it, so neither happens here.
# The version is POP3D_VERSION from config.h, which debian/changelog must
# carry. Prints the path of the .deb.
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
version=$(sed -n 's/^#define POP3D_VERSION "\(.*\)"$/\1/p' config.h)
changelog=$(dpkg-parsechangelog -S Version)
if [ "$version" != "$changelog" ]; then
	echo "deb.sh: config.h says $version, debian/changelog $changelog: add a changelog entry" >&2
	exit 1
fi
arch=$(dpkg --print-architecture)
work=$(mktemp -d "${TMPDIR:-/tmp}/pop3d-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/pop3d-$version
mkdir -p "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard |
		tar --null -T - -cf - 2>/dev/null | tar -C "$src" -xf -
else
	tar --exclude=./dist -cf - . | tar -C "$src" -xf -
fi
rm -f "$src"/*.o "$src/pop3d" "$src/pop3passwd" "$src/tests/unit" "$src/tests/dropdump"
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || {
	tail -n 60 "$work/build.log" >&2
	echo "deb.sh: dpkg-buildpackage failed" >&2
	exit 1
}
mkdir -p "$top/dist"
mv -f "$work/pop3d_${version}_$arch.deb" "$top/dist/"
for f in "$work"/*.buildinfo "$work"/*.changes; do
	[ -f "$f" ] && mv -f "$f" "$top/dist/"
done
echo "dist/pop3d_${version}_$arch.deb"
