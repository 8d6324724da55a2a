#!/bin/sh
# busybox acpid runs this on the ACPI power button (QMP system_powerdown).
exec /sbin/shutdown -h -P now
