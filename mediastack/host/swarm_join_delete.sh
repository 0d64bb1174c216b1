#!/bin/sh
# Leaves the swarm (a manager is demoted first, so the managers' quorum shrinks cleanly).
set -eu
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  echo "swarm: not in a swarm"
  exit 0
fi
if [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ]; then
  docker node demote "$(docker info --format '{{.Swarm.NodeID}}')" >&2
  # The demotion reaches this node through the managers' log: leave only once it is a worker (at most 60 s).
  tries=0
  while [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 60 ]; then
      echo "swarm: still a manager 60 s after its demotion; not leaving (see docker node ls)" >&2
      exit 1
    fi
    sleep 1
  done
fi
docker swarm leave >&2
echo "swarm: left"
