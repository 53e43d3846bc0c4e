#!/bin/sh
# Example pre-script: runs before the filesystems are frozen. Make the application put a
# consistent state on disk here (flush caches, pause writers), then exit 0. Exit 2 means
# "succeeded with a warning"; any other status is a failure. Output goes into the report.
echo "pre-script: operation $PLUGINHOST_OPERATION_ID, arguments: $*"
sync
exit 0
