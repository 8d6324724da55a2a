#!/bin/sh
# Runs qemu-ga on the virtio-serial port named org.qemu.guest_agent.0 and
# prints "vmsnap-guest: ready" on the console once the agent has opened it.
# busybox init restarts this script when the agent exits.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

if [ ! -e /usr/sbin/qemu-ga ]; then
	echo "vmsnap-guest: ready (no guest agent)" > /dev/console
	# busybox init would respawn this script: stay, doing nothing.
	exec sleep 2147483647
fi

port=
tries=0
while [ -z "$port" ]; do
	for name in /sys/class/virtio-ports/*/name; do
		[ "$(cat "$name" 2>/dev/null)" = org.qemu.guest_agent.0 ] || continue
		port=${name%/name}
		port=/dev/${port##*/}
	done
	[ -n "$port" ] && [ -c "$port" ] && break
	port=
	tries=$((tries + 1))
	if [ "$tries" = 100 ]; then
		echo "vmsnap-guest: no virtio-serial port named org.qemu.guest_agent.0" > /dev/console
		# Check again later rather than respawning in a tight loop.
		sleep 10
		exit 1
	fi
	sleep 0.1
done

mkdir -p /run/qemu-ga
qemu-ga -m virtio-serial -p "$port" --fsfreeze-hook=/etc/qemu/fsfreeze-hook \
	-t /run/qemu-ga -l /run/qemu-ga.log --pidfile=/run/qemu-ga.pid &
agent=$!
while kill -0 "$agent" 2>/dev/null; do
	if ls -l "/proc/$agent/fd" 2>/dev/null | grep -q " $port\$"; then
		read -r up idle < /proc/uptime
		echo "vmsnap-guest: ready (agent on $port, uptime ${up}s)" > /dev/console
		break
	fi
	sleep 0.05
done
wait "$agent"
echo "vmsnap-guest: qemu-ga exited with status $?, restarting it" > /dev/console
# Do not restart in a tight loop if it keeps failing.
sleep 1
