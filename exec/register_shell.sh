#!/bin/sh
# register_shell.sh: meson install step that lists the installed sandexec in /etc/shells, so that
# gateways which trust $SHELL only when it is a registered shell (OpenClaw's login-environment
# probe) use it. Skipped for staged installs (DESTDIR set); adds the line only once.
set -eu
shell=$1
shells=${SANDEXEC_SHELLS_FILE:-/etc/shells}
if [ -n "${DESTDIR:-}" ]; then
	echo "register_shell: DESTDIR set, not touching $shells (add $shell there on the target)"
	exit 0
fi
if [ -f "$shells" ] && grep -qxF "$shell" "$shells"; then
	echo "register_shell: $shell already in $shells"
	exit 0
fi
if ! printf '%s\n' "$shell" >>"$shells"; then
	echo "register_shell: cannot add $shell to $shells (run the install as root, or add it by hand)" >&2
	exit 1
fi
echo "register_shell: added $shell to $shells"
