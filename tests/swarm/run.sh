#!/usr/bin/env bash
# tests/swarm/run.sh: Minotaur on a real Docker engine, as users run it. Exits 0 only when all
# of this held, and removes what it made (stack, swarm if it made one, networks, containers,
# images) also when it fails:
#   1. two images built without pulling anything (static binaries in FROM scratch images, the
#      same entrypoint, rel/env.sh and healthcheck as docker/Dockerfile): the previous release
#      (rel/previous-release), built from its own sources by its own docker/build-offline.sh
#      (rel/build-previous.sh image), and this build;
#   2. the seed's pitfalls: a container without a long name fails with the clear error; a
#      container on two networks is named by its address on the network its peers are on;
#   3. `docker swarm init`, `docker stack deploy` of docker/stack.yml (3 replicas, the cookie and
#      the TLS certificates of docker/make-certs.sh as secrets, an encrypted overlay); every task
#      lists the two others in `minotaur rpc nodes`, named by its address on
#      the stack network although it sits on three;
#   4. the stack deployed with the previous release; games played against the tasks while
#      `docker service update --image <this build>` rolls this release out and `docker service
#      rollback` brings the previous one back (tests/swarm.rs): every game survives with its
#      state, every acknowledged input is applied once, and `members` shows only the new
#      version after the update (speaking this release's protocol), only the previous one
#      after the rollback.
#
# The clients play through the published port (a random one, so a user's stack on 4000 is not
# disturbed) when the routing mesh answers. It needs IPVS; where the kernel has none (this
# machine: /proc/net/ip_vs is missing and the port answers "Connection refused" while every task
# is healthy) they reach the tasks on their docker_gwbridge addresses, health-checked like a load
# balancer would, and say so. Swarm mode, overlay networks, DNS (`tasks.<service>`), secrets,
# healthchecks and rolling updates are the real ones either way.
#
# Env: MINOTAUR_STATIC_TARGET (cargo target dir of the static builds; default target/static),
#      MINOTAUR_PREVIOUS_IMAGE (the previous release's image, already built: .ci/run builds it
#        once with rel/build-previous.sh image; else built here and removed at the end),
#      MINOTAUR_SWARM_GAMES (default 300),
#      MINOTAUR_SWARM_LOGS (a directory: keep every container's log, the task list and the
#        client's output there also when the run passes; on failure they go to
#        /tmp/minotaur-swarm-logs),
#      MINOTAUR_RUST_LOG (RUST_LOG of the tasks, e.g. info,discovery=debug),
#      MINOTAUR_DEMO_TRACE=1 (the client prints every retried request and why, and every
#        answer slower than 25 ms with the node that hosts the game).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
stack=minotaur-e2e
service=${stack}_minotaur
work=$(mktemp -d)
made_swarm=
had_gwbridge=
images=()
containers=()
networks=()
t0=$SECONDS

log() { printf '[swarm %4ss] %s\n' "$((SECONDS - t0))" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

# Removes the stack and waits until its containers and networks are gone.
remove_stack() {
    docker stack rm "$stack" >/dev/null
    for _ in $(seq 1 60); do
        [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$stack")" ] &&
            [ -z "$(docker network ls -q --filter "label=com.docker.stack.namespace=$stack")" ] && return
        sleep 1
    done
}

cleanup() {
    local rc=$?
    # Best effort from here on (and no nounset: an empty array is "unbound" on older bash).
    set +eu
    if [ "$rc" != 0 ] || [ -n "${MINOTAUR_SWARM_LOGS:-}" ]; then
        logs=${MINOTAUR_SWARM_LOGS:-/tmp/minotaur-swarm-logs}
        mkdir -p "$logs"
        docker service ps --no-trunc "$service" >"$logs/tasks.txt" 2>&1
        for c in $(docker ps -aq --filter "label=com.docker.stack.namespace=$stack"); do
            docker logs --timestamps "$c" >"$logs/container-$c.log" 2>&1
        done
        [ -f "$work/client.log" ] && cp "$work/client.log" "$logs/client.log"
        log "logs kept in $logs"
    fi
    log "cleaning up"
    if grep -qx "$stack" <<<"$(docker stack ls --format '{{.Name}}' 2>/dev/null)"; then
        remove_stack
    fi
    for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
    for n in "${networks[@]}"; do docker network rm "$n" >/dev/null 2>&1; done
    if [ -n "$made_swarm" ]; then
        docker swarm leave --force >/dev/null 2>&1
        # swarm init made docker_gwbridge; leaving does not remove it.
        [ -n "$had_gwbridge" ] || docker network rm docker_gwbridge >/dev/null 2>&1
    fi
    for i in "${images[@]}"; do docker rmi -f "$i" >/dev/null 2>&1; done
    rm -rf "$work"
    log "done (exit $rc, ${SECONDS}s in all)"
    exit $rc
}
trap cleanup EXIT

command -v docker >/dev/null || fail "docker not found"
docker info >/dev/null 2>&1 || fail "no Docker engine answers"

# Leftovers of an earlier run that was killed before its cleanup.
docker rm -f minotaur-e2e-two >/dev/null 2>&1 || true
docker network rm minotaur-e2e-a minotaur-e2e-b >/dev/null 2>&1 || true
if grep -qx "$stack" <<<"$(docker stack ls --format '{{.Name}}' 2>/dev/null)"; then
    log "removing the stack an earlier run left"
    remove_stack
fi

# --- 1. images, nothing pulled ------------------------------------------------------------
target=${MINOTAUR_STATIC_TARGET:-$repo/target/static}
read -r _ old_version <<<"$(rel/build-previous.sh describe)"
new_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if [ -n "${MINOTAUR_PREVIOUS_IMAGE:-}" ]; then
    old=$(docker image inspect -f '{{.Id}}' "$MINOTAUR_PREVIOUS_IMAGE") ||
        fail "MINOTAUR_PREVIOUS_IMAGE=$MINOTAUR_PREVIOUS_IMAGE is not an image here"
    log "the previous release's image: $MINOTAUR_PREVIOUS_IMAGE (release $old_version)"
else
    log "building the previous release's image (release $old_version, from its own sources)"
    old=$(MINOTAUR_STATIC_TARGET="$target" rel/build-previous.sh image minotaur-e2e:previous)
    images+=(minotaur-e2e:previous)
fi
log "building this build's image (release $new_version, static binary, FROM scratch)"
new=$(docker/build-offline.sh --tag minotaur-e2e:current --target-dir "$target")
images+=(minotaur-e2e:current)
[ "$old" != "$new" ] || fail "the two builds gave the same image"
log "previous $old, current $new"

# --- 2. pitfalls ----------------------------------------------------------------------------
log "a container without a long name and DNS discovery must exit 2 naming RELEASE_NODE"
set +e
out=$(docker run --rm -e RELEASE_NODE=minotaur -e DNS_CLUSTER_QUERY=tasks.whatever \
    -e RELEASE_COOKIE=swarm-e2e-cookie-0123 "$new" 2>&1)
rc=$?
set -e
[ "$rc" = 2 ] || fail "expected exit 2, got $rc: $out"
grep -q 'RELEASE_NODE' <<<"$out" || fail "the error does not name RELEASE_NODE: $out"
grep -q 'long name' <<<"$out" || fail "the error does not say what to set: $out"

log "a container on two networks is named by its address on the network of its peers"
docker network create minotaur-e2e-a >/dev/null || fail "cannot create network minotaur-e2e-a"
networks+=(minotaur-e2e-a)
docker network create minotaur-e2e-b >/dev/null || fail "cannot create network minotaur-e2e-b"
networks+=(minotaur-e2e-b)
docker create --name minotaur-e2e-two --network minotaur-e2e-a -e RELEASE_COOKIE=swarm-e2e-cookie-0123 \
    -e DNS_CLUSTER_QUERY=peers "$new" >/dev/null
containers+=(minotaur-e2e-two)
docker network connect --alias peers minotaur-e2e-b minotaur-e2e-two
docker start minotaur-e2e-two >/dev/null
ip_a=$(docker inspect -f '{{(index .NetworkSettings.Networks "minotaur-e2e-a").IPAddress}}' minotaur-e2e-two)
ip_b=$(docker inspect -f '{{(index .NetworkSettings.Networks "minotaur-e2e-b").IPAddress}}' minotaur-e2e-two)
name=
for _ in $(seq 1 50); do
    name=$(docker exec minotaur-e2e-two minotaur rpc node 2>/dev/null) && break
    sleep 0.2
done
[ "$name" = "minotaur@$ip_b" ] || fail "expected minotaur@$ip_b (network b, where 'peers' resolves), got '$name' (a is $ip_a)"
docker rm -f minotaur-e2e-two >/dev/null

# --- 3. swarm, stack deploy, mesh ---------------------------------------------------------------
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
    log "docker swarm init"
    docker network inspect docker_gwbridge >/dev/null 2>&1 && had_gwbridge=1
    made_swarm=1
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null || fail "docker swarm init failed"
fi
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/cookie"
docker/make-certs.sh "$work/tls" >/dev/null
log "docker stack deploy of the previous release (3 replicas, start-first updates, cookie and TLS certificates as secrets, encrypted overlay)"
http_port=$((30000 + RANDOM % 20000))
STACK_NAME=$stack MINOTAUR_COOKIE_FILE="$work/cookie" MINOTAUR_TLS_DIR="$work/tls" MINOTAUR_IMAGE="$old" \
    MINOTAUR_HTTP_PORT=$http_port \
    docker stack deploy --resolve-image never -c docker/stack.yml "$stack" >/dev/null

log "waiting until every task lists the two others"
ok=
for _ in $(seq 1 120); do
    ids=$(docker ps -q --filter "name=$service." --filter health=healthy)
    if [ "$(wc -w <<<"$ids")" = 3 ]; then
        ok=1
        for c in $ids; do
            n=$(docker exec "$c" minotaur rpc nodes 2>/dev/null | grep -c . || true)
            [ "$n" = 2 ] || ok=
        done
        [ -n "$ok" ] && break
    fi
    sleep 1
done
[ -n "$ok" ] || { docker service ps --no-trunc "$service" >&2; fail "the stack did not form a full mesh"; }
for c in $(docker ps -q --filter "name=$service."); do
    own=$(docker exec "$c" minotaur rpc node)
    stack_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$service\").IPAddress}}" "$c")
    [ "$own" = "minotaur@$stack_ip" ] || fail "task $c is named $own, not by its stack network address $stack_ip"
    log "task $own: $(docker exec "$c" minotaur rpc nodes | tr '\n' ' ')"
    # Captured, then matched (`| grep -q` under pipefail fails when grep exits before the
    # console finishes writing).
    config=$(docker exec "$c" minotaur rpc config)
    grep -q 'CLUSTER_TLS_CA_FILE .*/run/secrets/minotaur_tls_ca' <<<"$config" ||
        fail "task $own does not run with the stack's TLS certificates: $config"
done
[ "$(docker network inspect -f '{{index .Options "encrypted"}}' "${stack}_minotaur" 2>/dev/null || echo missing)" != missing ] ||
    fail "the stack network ${stack}_minotaur is not an encrypted overlay"
log "node and console links are mutual TLS (the console reached every task with the stack's certificate); the overlay is encrypted"

# --- 4. play through a rolling update to the new build -------------------------------------------
log "playing games while 'docker service update' rolls out this release ($new_version) and 'docker service rollback' brings $old_version back"
MINOTAUR_SWARM_SERVICE=$service MINOTAUR_SWARM_HTTP_PORT=$http_port MINOTAUR_SWARM_NEW_IMAGE=$new \
    MINOTAUR_SWARM_NEW_VERSION=$new_version MINOTAUR_SWARM_OLD_VERSION=$old_version \
    cargo test -q -p minotaur --test swarm -- --ignored --nocapture --test-threads=1 2>&1 |
    tee "$work/client.log" >&2 || true
grep -q 'test result: ok. 1 passed' "$work/client.log" || fail "the rolling update scenario failed"
log "$(grep -o 'SWARM REPORT.*' "$work/client.log" || true)"
log "all checks passed"
