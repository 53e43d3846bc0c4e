#!/bin/sh
# Example post-script: runs after the thaw, whenever the pre-script ran. Undo what the
# pre-script did. PLUGINHOST_RESULT is success or failure (was a snapshot taken?) and
# PLUGINHOST_CONSISTENCY the level so far.
echo "post-script: snapshot $PLUGINHOST_RESULT, consistency $PLUGINHOST_CONSISTENCY"
exit 0
