#!/bin/sh
# GlusterFS TLS, step 1 on every node: this host's private key (made here, never leaves it, 0600) and a
# certificate request for it, printed for the signing step.
set -eu
#@parameters
ROOT="${ROOT:-}"
key="$ROOT/etc/ssl/glusterfs.key"
# Gluster's documented place is /etc/ssl; a build that reads OpenSSL's directory instead (Debian 12's 10.3:
# /usr/lib/ssl/glusterfs.pem, gluster/glusterdocs#802) finds a link there.
link_default() {
  dir=$(openssl version -d | sed -n 's/^OPENSSLDIR: "\(.*\)"$/\1/p')
  if [ -n "$dir" ] && [ "$dir" != /etc/ssl ] && [ -d "$ROOT$dir" ]; then
    ln -sfn "/etc/ssl/$1" "$ROOT$dir/$1"
  fi
}
mkdir -p "$ROOT/etc/ssl"
if [ ! -s "$key" ]; then
  (
    umask 077
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$key.new" 2>/dev/null
  )
  chmod 600 "$key.new"
  mv -f "$key.new" "$key"
  echo "gluster tls: key made for $CN" >&2
fi
link_default glusterfs.key
openssl req -new -key "$key" -subj "/CN=$CN"
