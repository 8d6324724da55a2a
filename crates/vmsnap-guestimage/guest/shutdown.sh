#!/bin/sh
# /sbin/shutdown for qemu-ga's guest-shutdown ("-h -P +0 msg", "-H +0 msg",
# "-r +0 msg") and the ACPI power button: sync, unmount the data disks, then
# power off, halt or reboot at once.
action=poweroff
for arg in "$@"; do
	case "$arg" in
	-r) action=reboot ;;
	-H) action=halt ;;
	-h | -P) ;;
	esac
done
echo "vmsnap-guest: shutdown ($action)" > /dev/console
/sbin/vmsnap-disks unmount
"$action" -f
