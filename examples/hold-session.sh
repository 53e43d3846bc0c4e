#!/bin/sh
# Example for the shell plugin's hold mode: stands for a client that takes an application's
# lock in its session and must keep that session open until the snapshot is taken. It prints
# the ready line once "locked" and holds until its stdin closes (that is resume).
echo "hold-session: lock taken" >&2
echo READY
cat >/dev/null
echo "hold-session: stdin closed, lock released" >&2
