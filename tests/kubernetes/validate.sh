#!/usr/bin/env bash
# Checks the Kubernetes manifests (docker/kubernetes) without a cluster:
#   1. renders the kustomize base with `kubectl kustomize` (and the base with the optional TLS
#      component, when this kubectl's kustomize knows components);
#   2. validates every rendered object against the Kubernetes API schemas (kubernetes-validate,
#      which carries them offline, strict: an unknown or misspelled field is an error), for the
#      oldest and the newest Kubernetes version it knows;
#   3. checks the properties the README promises (tests/kubernetes/properties.py);
#   4. proves 2 and 3 can fail: a misspelled field, and manifests with one promise broken each,
#      must be rejected.
# Installs what it lacks: kubectl (Debian's kubernetes-client: kubectl 1.20, whose built-in
# kustomize v2.0.3 renders the base) and kubernetes-validate (PyPI, in a venv under target/).
#
#   tests/kubernetes/validate.sh            # from anywhere; exit 0 when everything holds
set -euo pipefail
cd "$(dirname "$0")/../.."

# Pinned: its schemas are part of what this check means.
KUBERNETES_VALIDATE_VERSION=1.37.0
# The oldest and newest API versions kubernetes-validate 1.37.0 carries schemas for.
SCHEMA_VERSIONS=(1.25.0 1.37.0)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

target=${CARGO_TARGET_DIR:-target}
work="$target/kubernetes"
rm -rf "$work"
mkdir -p "$work"

if ! command -v kubectl >/dev/null 2>&1; then
    echo "installing kubectl (Debian's kubernetes-client)"
    apt_install kubernetes-client
fi
venv="$target/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    echo "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (PyPI) in $venv"
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        apt_install python3 python3-venv
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
python="$venv/bin/python"

validate() { # FILE: schema-validate against every version; quiet on success per object
    local file=$1 v
    for v in "${SCHEMA_VERSIONS[@]}"; do
        "$venv/bin/kubernetes-validate" --strict -k "$v" "$file" || return 1
    done
}

echo "--- kubectl: $(kubectl version --client 2>/dev/null | head -n 2 | tr '\n' ' ')"

echo "--- render docker/kubernetes"
kubectl kustomize docker/kubernetes >"$work/base.yaml"
grep -E '^kind: ' "$work/base.yaml" | sort | uniq -c

echo "--- schemas (kubernetes-validate $KUBERNETES_VALIDATE_VERSION, strict)"
validate "$work/base.yaml"

echo "--- properties"
"$python" tests/kubernetes/properties.py "$work/base.yaml"

# The TLS component (CLUSTER_TLS_*): rendered on top of the base in
# a throw-away overlay, as an operator would. kustomize v2 (kubectl < 1.21) has no components.
echo "--- render docker/kubernetes with the tls component"
mkdir -p "$work/tls-overlay"
cat >"$work/tls-overlay/kustomization.yaml" <<EOF
resources: [$(realpath --relative-to="$work/tls-overlay" docker/kubernetes)]
components: [$(realpath --relative-to="$work/tls-overlay" docker/kubernetes/tls)]
EOF
if kubectl kustomize "$work/tls-overlay" >"$work/tls.yaml" 2>"$work/tls.err"; then
    validate "$work/tls.yaml"
    for var in CLUSTER_TLS_CERT_FILE CLUSTER_TLS_KEY_FILE CLUSTER_TLS_CA_FILE; do
        grep -q "name: $var\$" "$work/tls.yaml" || { echo "FAIL  the tls component does not set $var"; exit 1; }
    done
    "$python" tests/kubernetes/properties.py "$work/tls.yaml" >/dev/null ||
        { echo "FAIL  the tls component breaks a property of the base"; exit 1; }
    echo "ok    the tls component renders, validates, sets CLUSTER_TLS_CERT_FILE/KEY_FILE/CA_FILE, keeps the base's properties"
elif grep -qi 'component' "$work/tls.err"; then
    echo "skip  this kubectl's kustomize has no components (kubectl 1.21+ needed): $(head -n 1 "$work/tls.err")"
else
    cat "$work/tls.err"
    exit 1
fi

# Each broken copy must be rejected; a mutation that changes nothing is a broken self-test.
echo "--- the checks reject broken manifests"
broken() { # NAME CHECK SED-EXPRESSION
    local name=$1 check=$2 expr=$3 file="$work/broken-$1.yaml"
    sed -e "$expr" "$work/base.yaml" >"$file"
    if cmp -s "$file" "$work/base.yaml"; then
        echo "FAIL  self-test $name: \`$expr\` changed nothing"
        exit 1
    fi
    if "$check" "$file" >"$file.out" 2>&1; then
        echo "FAIL  self-test $name: accepted"
        cat "$file.out"
        exit 1
    fi
    echo "ok    rejected ($name): $(grep -m1 -E 'ERROR|FAIL' "$file.out")"
}
properties() { "$python" tests/kubernetes/properties.py "$1"; }
broken misspelled-field validate 's/readOnlyRootFilesystem:/readOnlyRootFileSystem:/'
broken wrong-type validate 's/replicas: 3/replicas: three/'
broken max-unavailable properties 's/maxUnavailable: 0/maxUnavailable: 1/'
broken grace-period properties 's/terminationGracePeriodSeconds: 20/terminationGracePeriodSeconds: 9/'
broken liveness-path properties 's|path: /livez|path: /healthz|'
broken not-ready-addresses properties 's/publishNotReadyAddresses: true/publishNotReadyAddresses: false/'
broken srv-port-name properties 's/_cluster\._tcp\./_node._tcp./'
broken writable-root properties 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/'

echo "--- docker/kubernetes: valid, and every property holds"
