#!/usr/bin/env bash
# docker/make-certs.sh DIR: a CA for one cluster and a node certificate it signed, for mutual
# TLS on node and console links (CLUSTER_TLS_*), with the openssl CLI. Writes into DIR (made,
# mode 700): ca.pem (the CA's certificate), ca.key (its key: keep it offline, it makes
# members), node.pem and node.key (the certificate every node and console presents; names are
# not checked, so one certificate serves every container). Refuses to overwrite existing files.
#
#   docker/make-certs.sh ./cluster-tls
#   MINOTAUR_TLS_DIR=./cluster-tls ... docker stack deploy -c docker/stack.yml minotaur-stack
#
# Env: MINOTAUR_CERT_DAYS (node certificate validity, default 365).
set -euo pipefail

dir=${1:?usage: docker/make-certs.sh DIR}
command -v openssl >/dev/null || { echo "make-certs: the openssl command is needed" >&2; exit 2; }
for f in ca.pem ca.key node.pem node.key; do
    if [ -e "$dir/$f" ]; then
        echo "make-certs: $dir/$f exists; not overwriting (remove it first)" >&2
        exit 2
    fi
done
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 \
    -subj "/CN=minotaur cluster CA" 2>/dev/null
# Each node is server and client of its links: both usages.
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:minotaur-node\n' \
    >"$work/node.ext"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/node.key" -out "$work/node.csr" -subj "/CN=minotaur-node" 2>/dev/null
openssl x509 -req -in "$work/node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -days "${MINOTAUR_CERT_DAYS:-365}" \
    -extfile "$work/node.ext" -out "$dir/node.pem" 2>/dev/null
chmod 644 "$dir/ca.pem" "$dir/node.pem"
echo "$dir: ca.pem ca.key node.pem node.key"
