#!/bin/sh
# GlusterFS TLS, step 2 on the first storage host: the cluster's CA (its key stays here, 0600) signs each
# node's request, after checking that the request names that node and is signed by its key. Prints the CA's
# certificate and each node's, each after a "### <name>" line, for the install step.
set -eu
#@parameters
ROOT="${ROOT:-}"
dir="$ROOT/var/lib/mediastack/gluster-ca"
days=3650
mkdir -p "$dir"
chmod 700 "$dir"
if [ ! -s "$dir/ca.key" ] || [ ! -s "$dir/ca.pem" ]; then
  (
    umask 077
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$dir/ca.key.new" 2>/dev/null
  )
  chmod 600 "$dir/ca.key.new"
  openssl req -new -x509 -key "$dir/ca.key.new" -subj "/CN=$CA_NAME" -days "$days" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem.new"
  mv -f "$dir/ca.key.new" "$dir/ca.key"
  mv -f "$dir/ca.pem.new" "$dir/ca.pem"
  echo "gluster tls: CA made" >&2
fi
echo "### ca"
cat "$dir/ca.pem"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# sign NAME REQUEST: the node's certificate, printed after its "### NAME" line.
sign() {
  printf '%s\n' "$2" > "$work/req.pem"
  if ! openssl req -in "$work/req.pem" -noout -verify 2>/dev/null; then
    echo "gluster tls: the request for $1 is not signed by its own key" >&2
    exit 1
  fi
  subject=$(openssl req -in "$work/req.pem" -noout -subject -nameopt RFC2253)
  if [ "$subject" != "subject=CN=$1" ]; then
    echo "gluster tls: the request for $1 names $subject; refused" >&2
    exit 1
  fi
  # A certificate this CA issued for the same key is kept: signing again on a re-run would change every
  # node's file (and restart glusterd) for nothing.
  issued="$dir/issued/$1.pem"
  if [ -s "$issued" ] && openssl verify -CAfile "$dir/ca.pem" "$issued" >/dev/null 2>&1 &&
    [ "$(openssl x509 -in "$issued" -noout -pubkey)" = "$(openssl req -in "$work/req.pem" -noout -pubkey)" ]; then
    echo "### $1"
    cat "$issued"
    return 0
  fi
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > "$work/ext"
  printf 'extendedKeyUsage=serverAuth,clientAuth\n' >> "$work/ext"
  openssl x509 -req -in "$work/req.pem" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAserial "$dir/serial" \
    -CAcreateserial -days "$days" -sha256 -extfile "$work/ext" -out "$work/cert.pem" 2>/dev/null
  mkdir -p "$dir/issued"
  cp "$work/cert.pem" "$issued.new"
  mv -f "$issued.new" "$issued"
  echo "### $1"
  cat "$work/cert.pem"
}

#@requests
