#!/bin/sh
# On the first storage host: probes the other storage hosts and creates and starts the replicated volume,
# which only the cluster's own nodes may mount (auth.allow; GlusterFS's default allows every address), and,
# with TLS, only over TLS with a certificate the cluster's CA signed for one of its nodes (auth.ssl-allow).
set -eu
#@parameters
for peer in $PEERS; do
  gluster --mode=script peer probe "$peer"
done
if gluster --mode=script volume info "$VOLUME" >/dev/null 2>&1; then
  echo "gluster: volume $VOLUME exists"
else
  # shellcheck disable=SC2086  # BRICKS: host:path words, each from the config's grammar (no space, no glob)
  gluster --mode=script volume create "$VOLUME" replica "$REPLICA" transport tcp $BRICKS
fi
gluster --mode=script volume set "$VOLUME" auth.allow "$CLIENTS"
if [ -n "$TLS_NAMES" ]; then
  # TLS for I/O, and only the cluster's own certificates may connect.
  gluster --mode=script volume set "$VOLUME" client.ssl on
  gluster --mode=script volume set "$VOLUME" server.ssl on
  gluster --mode=script volume set "$VOLUME" auth.ssl-allow "$TLS_NAMES"
fi
if gluster --mode=script volume info "$VOLUME" | grep -q '^Status: Started'; then
  echo "gluster: volume $VOLUME started"
else
  gluster --mode=script volume start "$VOLUME"
fi
