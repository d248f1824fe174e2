#!/usr/bin/env bash
# Make a private CA and a server certificate for the Mosquitto TLS listener.
#
#   make-certs.sh OUT_DIR [SAN ...]
#
# SAN entries are subjectAltName items, e.g. DNS:mqtt.park.example.cn IP:10.20.0.5; clients check
# the name they connect to against them. Default: DNS:mosquitto (the compose service name),
# DNS:localhost, IP:127.0.0.1. Add every name and address gateways use to reach the broker.
#
# Writes OUT_DIR/ca.crt, ca.key, server.crt, server.key. ca.crt goes to every client
# (PW_*_MQTT__CA_FILE, the gateways' config); ca.key signs, so keep it off the broker host if you
# can. An existing CA is reused: run the script again to renew or re-name the server certificate
# without touching the gateways.
#
# Environment: CA_DAYS (default 3650), SERVER_DAYS (default 825), CA_CN, SERVER_CN.
set -euo pipefail

usage() {
    echo "usage: $0 OUT_DIR [SAN ...]   e.g. $0 certs DNS:mqtt.example.cn IP:10.0.0.5" >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
out_dir=$1
shift
if [[ $# -gt 0 ]]; then
    sans=("$@")
else
    sans=(DNS:mosquitto DNS:localhost IP:127.0.0.1)
fi
for san in "${sans[@]}"; do
    [[ $san == DNS:?* || $san == IP:?* ]] || { echo "not a DNS:/IP: entry: $san" >&2; usage; }
done

ca_days=${CA_DAYS:-3650}
server_days=${SERVER_DAYS:-825} # the longest lifetime some TLS clients still accept
ca_cn=${CA_CN:-parkwatch MQTT CA}
server_cn=${SERVER_CN:-${sans[0]#*:}}

command -v openssl >/dev/null || { echo "openssl not found" >&2; exit 1; }
mkdir -p "$out_dir"
cd "$out_dir"
umask 077 # keys are created readable by their owner only

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ -s ca.key && -s ca.crt ]]; then
    echo "reusing the CA in $out_dir"
else
    # basicConstraints and keyUsage marked critical, key identifiers present: strict verifiers
    # (Python 3.13's default context sets VERIFY_X509_STRICT) refuse a CA without them
    openssl req -x509 -new -nodes -newkey rsa:3072 -sha256 -days "$ca_days" \
        -subj "/CN=$ca_cn" \
        -keyout ca.key -out ca.crt \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
    echo "made a new CA: $out_dir/ca.crt"
fi

san_list=$(IFS=,; echo "${sans[*]}")
cat >"$work/server.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $san_list
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF

openssl req -new -nodes -newkey rsa:2048 -sha256 \
    -subj "/CN=$server_cn" \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
openssl x509 -req -sha256 -days "$server_days" \
    -in "$work/server.csr" -CA ca.crt -CAkey ca.key \
    -set_serial "0x$(openssl rand -hex 16)" \
    -extfile "$work/server.ext" -out "$work/server.crt" 2>/dev/null
openssl verify -CAfile ca.crt "$work/server.crt" >/dev/null

# replace the pair only once both exist and verify, so a failed run leaves the old pair in place
mv "$work/server.key" server.key
mv "$work/server.crt" server.crt
# the certificates are public; the broker (uid 1883 in the eclipse-mosquitto image) must be able
# to read server.key: chown it to that user, see README.md
chmod 644 ca.crt server.crt
chmod 600 ca.key server.key
echo "made $out_dir/server.crt for $san_list, valid $server_days days"
