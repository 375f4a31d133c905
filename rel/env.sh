# shellcheck shell=sh
# rel/env.sh: the release's environment script, as `releases/VSN/env.sh` of an Elixir release.
#
# Sourced (never executed) by /app/bin/entrypoint.sh (PID 1 of the container) and by the
# /app/bin/minotaur wrapper (what `docker exec CONTAINER minotaur remote|rpc ...` runs), so the
# node and its consoles see the same environment. POSIX sh: it runs under busybox sh (the
# offline image) and dash (/bin/sh of the Debian image); no bash.
#
# The caller sets RELEASE_COMMAND to the subcommand (`start`, `remote`, `rpc`, ...) first; only
# `start` writes the name record, only the others read it (see RELEASE_NODE below).
# It only exports variables the binary reads; it never prints the cookie, and it never
# overrides a variable the operator set: a wrong value (a bare `RELEASE_NODE=minotaur` with
# DNS_CLUSTER_QUERY, say) reaches the binary, which reports every bad variable at once and
# exits 2. On a missing cookie file it stops here with exit 2 (see the end).
#
# Tools: none but the shell and `id`; the node name comes from the binary. Every variable is
# prefixed `_mt_` and unset at the end.

# RELEASE_DISTRIBUTION: long names by default (needed for discovery across hosts), like the
# binary; empty counts as unset, as in Elixir's env.sh.
RELEASE_DISTRIBUTION="${RELEASE_DISTRIBUTION:-name}"
export RELEASE_DISTRIBUTION

# Where `start` records the node name it runs under, for the consoles (see below).
_mt_record="${RELEASE_TMP:-/tmp}/minotaur.node"

# RELEASE_NODE. Why env.sh exports it instead of leaving it to the binary: the node (`start`)
# and a console started later by `docker exec` must agree on the name, also when the peers
# stop answering DNS (a draining node has left it). So `start` works the name out here, with
# the binary's own rule (`minotaur.bin node-name`: the address the routing table uses to reach
# a peer that DNS_CLUSTER_QUERY returns, so the one on the network shared with the peers, right
# also with several networks, where `$(hostname -I)` of the Elixir seed picks the first
# interface; else the single address /etc/hosts gives this host's name; else the first
# non-loopback IPv4 address), exports it (the binary then takes it as given) and records it in
# $RELEASE_TMP/minotaur.node (default /tmp); a console (the wrapper) reuses the recorded name,
# and works it out the same way only when there is no record (the node was not started by the
# entrypoint).
# Only for long names (`name`) and only when RELEASE_NODE is unset: a name the operator gave,
# a bare basename included, goes to the binary untouched (a bare one with DNS_CLUSTER_QUERY is
# refused there with exit 2, naming RELEASE_NODE). For `sname` the binary uses the short host
# name and for `none` there is no cluster name, so both are left to it. When no name can be
# worked out (no address, or a bad variable) RELEASE_NODE stays unset and the binary reports
# that itself.
if [ -z "${RELEASE_NODE+set}" ] && [ "$RELEASE_DISTRIBUTION" = name ]; then
    _mt_node=
    if [ -n "${RELEASE_COMMAND:-}" ] && [ "$RELEASE_COMMAND" != start ] && [ -r "$_mt_record" ]; then
        read -r _mt_node _mt_rest <"$_mt_record" || true
    fi
    if [ -z "$_mt_node" ]; then
        _mt_node=$("${RELEASE_ROOT:-/app}/bin/minotaur.bin" node-name 2>/dev/null) || _mt_node=
    fi
    if [ -n "$_mt_node" ]; then
        RELEASE_NODE=$_mt_node
        export RELEASE_NODE
    fi
fi

# Record the name a starting node runs under (or forget a stale record), best effort: a
# read-only root file system only costs the consoles the record.
if [ "${RELEASE_COMMAND:-}" = start ]; then
    case ${RELEASE_NODE:-} in
        ?*@?*) { printf '%s\n' "$RELEASE_NODE" >"$_mt_record"; } 2>/dev/null || true ;;
        *) rm -f "$_mt_record" 2>/dev/null || true ;;
    esac
fi

# The cookie. RELEASE_COOKIE wins; else the binary reads RELEASE_COOKIE_FILE itself (the value
# never passes through this script, so it can't leak into `ps`, logs or `docker inspect`),
# but a missing or unreadable file is reported here, before anything starts.
if [ -z "${RELEASE_COOKIE+set}" ] && [ -n "${RELEASE_COOKIE_FILE:-}" ]; then
    if [ ! -f "$RELEASE_COOKIE_FILE" ] || [ ! -r "$RELEASE_COOKIE_FILE" ]; then
        echo "error: RELEASE_COOKIE_FILE: cannot read \`$RELEASE_COOKIE_FILE\` as user $(id -u 2>/dev/null || echo '?'); expected a readable file holding the cookie (a Docker secret: check the service's \`secrets:\` and that the secret exists), or set RELEASE_COOKIE" >&2
        exit 2
    fi
    if [ ! -s "$RELEASE_COOKIE_FILE" ]; then
        echo "error: RELEASE_COOKIE_FILE: \`$RELEASE_COOKIE_FILE\` is empty; expected the cluster's shared secret" >&2
        exit 2
    fi
fi

unset _mt_record _mt_node _mt_rest
