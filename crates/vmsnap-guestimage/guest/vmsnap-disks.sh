#!/bin/sh
# vmsnap-disks scan|watch|unmount
#   scan     format blank virtio and SCSI disks with ext4 and mount each at
#            /mnt/<serial> (the host sets serial = volume name), or /mnt/<vdX|sdX>
#   watch    every half second, if disks were plugged or unplugged: scan, and
#            lazily unmount the disks that are gone
#   unmount  stop the processes using data disks, then sync and unmount
#            them (used at shutdown)

# The serial the host gave a disk. virtio-blk shows (at most 20 bytes of)
# it in /sys/block/vdX/serial; a SCSI disk in its Unit Serial Number VPD
# page (0x80), which the kernel keeps whole: a 4-byte header, then the serial.
disk_serial() {
	case "$1" in
	vd*) cat "/sys/block/$1/serial" ;;
	sd*) dd if="/sys/block/$1/device/vpd_pg80" bs=1 skip=4 ;;
	esac 2>/dev/null
}

# /mnt/<serial>, or /mnt/<vdX|sdX> when the serial is empty, unusable as a
# directory name, or already mounted (two disks with the same serial).
# Serials have KubeVirt's characters, [A-Za-z0-9_.+-].
mount_point() {
	serial=$(disk_serial "$1" | tr -cd 'A-Za-z0-9._+-')
	case "$serial" in
	"" | . | ..) serial=$1 ;;
	esac
	grep -q " /mnt/$serial " /proc/mounts && serial=$1
	echo "/mnt/$serial"
}

is_mounted() {
	grep -q "^/dev/$1 " /proc/mounts
}

# True when the first 128 KiB are all zero: no filesystem, no partition table.
is_blank() {
	[ "$(dd if="/dev/$1" bs=65536 count=2 2>/dev/null | tr -d '\000' | wc -c)" = 0 ]
}

# True when the ext4 superblock magic 0xEF53 is at byte offset 1080.
has_ext4() {
	[ "$(dd if="/dev/$1" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 53ef ]
}

# Disks that could not be mounted are remembered here and not retried
# until they are unplugged.
skipped=/run/vmsnap-disks

setup_disk() {
	dev=$1
	# devtmpfs may not have made the node of a disk just plugged: try again.
	[ -b "/dev/$dev" ] || { pending=1; return 0; }
	[ -e "$skipped/$dev" ] && return 0
	is_mounted "$dev" && return 0
	target=$(mount_point "$dev")
	if ! has_ext4 "$dev"; then
		if is_blank "$dev"; then
			echo "vmsnap-guest: formatting /dev/$dev"
			# The UUID and hash seed come from the kernel, which never blocks:
			# libuuid's getrandom() waits for the entropy pool, seconds under TCG.
			/sbin/mke2fs -t ext4 -q -F -U "$(cat /proc/sys/kernel/random/uuid)" \
				-E "hash_seed=$(cat /proc/sys/kernel/random/uuid)" "/dev/$dev" ||
				{ give_up "$dev"; return 1; }
		else
			echo "vmsnap-guest: /dev/$dev is not blank, not formatting it"
		fi
	fi
	mkdir -p "$target"
	# noinit_itable: no background zeroing of inode tables after mount.
	if mount -o noinit_itable "/dev/$dev" "$target" 2>/dev/null || mount "/dev/$dev" "$target"; then
		echo "vmsnap-guest: mounted /dev/$dev at $target"
	else
		rmdir "$target"
		give_up "$dev"
		return 1
	fi
}

give_up() {
	echo "vmsnap-guest: cannot use /dev/$1, leaving it alone"
	mkdir -p "$skipped"
	: > "$skipped/$1"
}

scan() {
	for path in /sys/block/vd* /sys/block/sd*; do
		[ -e "$path" ] && setup_disk "${path##*/}"
	done
}

# Lazily unmount data disks whose device has gone away.
forget_removed() {
	grep -E '^/dev/(vd|sd)' /proc/mounts | while read -r dev target rest; do
		[ -e "/sys/block/${dev#/dev/}" ] && continue
		umount -l "$target" && rmdir "$target" && echo "vmsnap-guest: $dev removed, unmounted $target"
	done
	for marker in "$skipped"/*; do
		[ -e "$marker" ] && [ ! -e "/sys/block/${marker##*/}" ] && rm -f "$marker"
	done
}

# Processes with files open on a data disk (tswriter, say) would keep it busy.
stop_users() {
	pids=$(ls -l /proc/[0-9]*/fd 2>/dev/null | awk '
		/^\/proc\// { split($0, part, "/"); pid = part[3] }
		/ -> \/mnt\// { print pid }' | sort -u)
	[ -n "$pids" ] || return 0
	kill $pids 2>/dev/null
	sleep 0.2
	kill -9 $pids 2>/dev/null
}

unmount_all() {
	sync
	stop_users
	grep -E '^/dev/(vd|sd)' /proc/mounts | while read -r dev target rest; do
		umount "$target" 2>/dev/null || mount -o remount,ro "$target" 2>/dev/null || umount -l "$target"
	done
	sync
}

case "$1" in
scan) scan ;;
watch)
	# Rescan only when the set of disks changes, to stay quiet otherwise
	# (the glob costs no process).
	previous=
	while :; do
		set -- /sys/block/vd* /sys/block/sd*
		if [ "$*" != "$previous" ]; then
			pending=
			scan
			forget_removed
			[ -z "$pending" ] && previous="$*"
		fi
		sleep 0.5
	done
	;;
unmount) unmount_all ;;
*)
	echo "usage: vmsnap-disks scan|watch|unmount" >&2
	exit 2
	;;
esac
