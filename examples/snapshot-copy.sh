#!/bin/sh
# Example snapshot command for loop-mounted filesystems: runs while they are frozen and
# copies the backing image. Usage: snapshot-copy.sh IMAGE DESTINATION
# It must not write to a frozen filesystem: DESTINATION lies elsewhere.
set -eu
cp --sparse=always "$1" "$2"
echo "copied $1 to $2 ($(du -h "$2" | cut -f1) used)"
