#!/bin/sh
# /init of the vmsnap test guest (an initramfs run by the kernel as pid 1).
# It prepares the system, then hands pid 1 to busybox init, which runs the
# services listed in /etc/inittab.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mkdir -p /run/lock /mnt
hostname vmsnap-guest

# The builder resolved the load order from modules.dep (dependencies first).
modules=/lib/modules/$(uname -r)
while read -r module; do
	insmod "$modules/$module" || echo "vmsnap-guest: cannot load $module"
done < /etc/vmsnap/modules

ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
	ip link set eth0 up
	# In the background: a network without DHCP must not delay the boot.
	udhcpc -f -i eth0 -s /etc/vmsnap/udhcpc.sh -T 1 >/dev/null 2>&1 &
fi

# vmsnap.agent=off on the kernel command line (a VM's kernelBoot.kernelArgs)
# makes this an image without a guest agent, like the Alpine and CirrOS
# images of KubeVirt's tests: qemu-ga is not there at all.
if grep -qw 'vmsnap.agent=off' /proc/cmdline; then
	rm -f /usr/sbin/qemu-ga
fi

# Format blank data disks and mount them before the agent says it is ready.
/sbin/vmsnap-disks scan

exec /sbin/init
