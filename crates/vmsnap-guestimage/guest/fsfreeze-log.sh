#!/bin/sh
# Appends "<freeze|thaw> <CLOCK_REALTIME microseconds>" to a log on tmpfs,
# which is not itself frozen.
echo "$1 $(tswriter --now)" >> /run/fsfreeze-hook.log
