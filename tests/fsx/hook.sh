#!/bin/sh
# hook.sh: sm-fsx's --external hook: makes the change the exerciser asks for on the sandbox side
# (`write FILE OFFSET HEX` or `truncate FILE SIZE`, FILE relative to the directory), with dd:
#   hook.sh direct DIR ARGS...                 in DIR directly (a sandbox's backing directory,
#                                              or the local directory of the self-check)
#   hook.sh sandexec SANDEXEC MOUNTDIR ARGS... in the sandbox, through sandexec run in MOUNTDIR
#   hook.sh corrupt DIR ARGS...                like direct, but a write's first byte is flipped
#                                              without telling the exerciser (its checker's test)
set -eu

# run by sh (here or in the sandbox): $1 = write|truncate, $2 = file, $3 = offset|size, $4 = hex
APPLY='f=$2 at=$3
if [ "$1" = truncate ]; then exec dd if=/dev/null of="$f" bs=1 seek="$at" 2>/dev/null; fi
set -- $(printf %s "$4" | sed "s/../0x& /g")
printf "$(printf "\\\\%03o" "$@")" | dd of="$f" bs=1 seek="$at" conv=notrunc 2>/dev/null'

mode=$1
shift
case $mode in
direct)
	cd "$1"
	shift
	exec sh -c "$APPLY" sh "$@"
	;;
corrupt)
	cd "$1"
	shift
	if [ "$1" = write ]; then
		hex=$4
		rest=${hex#??}
		first=$(printf %02x $((0x${hex%"$rest"} ^ 1)))
		set -- "$1" "$2" "$3" "$first$rest"
	fi
	exec sh -c "$APPLY" sh "$@"
	;;
sandexec)
	sandexec=$1
	cd "$2"
	shift 2
	exec "$sandexec" -- sh -c "$APPLY" sh "$@"
	;;
*)
	echo "hook.sh: unknown mode $mode" >&2
	exit 2
	;;
esac
