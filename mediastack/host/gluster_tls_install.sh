#!/bin/sh
# GlusterFS TLS, step 3 on every node: its certificate and the cluster's CA where Gluster reads them
# (/etc/ssl/glusterfs.pem, /etc/ssl/glusterfs.ca), and /var/lib/glusterd/secure-access, which turns on TLS
# for the management connections; glusterd, where it runs, restarts to take them.
set -eu
#@parameters
ROOT="${ROOT:-}"
changed=0
# Gluster's documented place is /etc/ssl; a build that reads OpenSSL's directory instead (Debian 12's 10.3:
# /usr/lib/ssl/glusterfs.pem, gluster/glusterdocs#802) finds a link there.
link_default() {
  dir=$(openssl version -d | sed -n 's/^OPENSSLDIR: "\(.*\)"$/\1/p')
  if [ -n "$dir" ] && [ "$dir" != /etc/ssl ] && [ -d "$ROOT$dir" ]; then
    ln -sfn "/etc/ssl/$1" "$ROOT$dir/$1"
  fi
}
# put FILE CONTENT: written beside and renamed over, 0644 (certificates are public).
put() {
  if [ "$(cat "$ROOT$1" 2>/dev/null || true)" != "$2" ]; then
    mkdir -p "$(dirname "$ROOT$1")"
    printf '%s\n' "$2" > "$ROOT$1.new"
    chmod 644 "$ROOT$1.new"
    mv -f "$ROOT$1.new" "$ROOT$1"
    changed=1
  fi
}
if [ ! -s "$ROOT/etc/ssl/glusterfs.key" ]; then
  echo "gluster tls: no key at /etc/ssl/glusterfs.key (the key step makes it)" >&2
  exit 1
fi
put /etc/ssl/glusterfs.pem "$CERT"
put /etc/ssl/glusterfs.ca "$CA"
link_default glusterfs.pem
link_default glusterfs.ca
if [ ! -e "$ROOT/var/lib/glusterd/secure-access" ]; then
  mkdir -p "$ROOT/var/lib/glusterd"
  : > "$ROOT/var/lib/glusterd/secure-access"
  changed=1
fi
if [ "$changed" = 1 ] && [ -z "$ROOT" ] && command -v systemctl >/dev/null && systemctl -q is-active glusterd; then
  systemctl restart glusterd
  echo "gluster tls: glusterd restarted with TLS"
fi
echo "gluster tls: $CN's certificate in place"
