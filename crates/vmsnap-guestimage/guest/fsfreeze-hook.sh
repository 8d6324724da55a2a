#!/bin/sh
# qemu-ga runs this with "freeze" before freezing the filesystems and with
# "thaw" after thawing them. It runs every executable in fsfreeze-hook.d in
# name order and fails if one of them fails.
status=0
for hook in /etc/qemu/fsfreeze-hook.d/*; do
	[ -x "$hook" ] || continue
	"$hook" "$@" || status=1
done
exit $status
