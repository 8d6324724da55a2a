#!/bin/sh
# udhcpc event script: configure the lease on the interface.
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	;;
bound | renew)
	ip -4 addr flush dev "$interface"
	ip -4 addr add "$ip/${mask:-24}" dev "$interface"
	if [ -n "$router" ]; then
		ip route add default via "${router%% *}" dev "$interface"
	fi
	: > /etc/resolv.conf
	for server in $dns; do
		echo "nameserver $server" >> /etc/resolv.conf
	done
	;;
esac
