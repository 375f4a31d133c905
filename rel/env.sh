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
# Tools: `ip` and `nslookup` (busybox applets: symlinks in the offline image, `busybox ip` in
# the Debian image, which installs the busybox package), `getent` when there is no nslookup,
# `timeout` to bound DNS, `tr`. Every helper is prefixed `_mt_` and unset at the end.

# RELEASE_DISTRIBUTION: long names by default (needed for discovery across hosts), like the
# binary; empty counts as unset, as in Elixir's env.sh.
RELEASE_DISTRIBUTION="${RELEASE_DISTRIBUTION:-name}"
export RELEASE_DISTRIBUTION

# Where `start` records the node name it runs under, for the consoles (see below).
_mt_record="${RELEASE_TMP:-/tmp}/minotaur.node"

# _mt_cmd NAME: prints how to run tool NAME (`NAME`, or `busybox NAME` when busybox has the
# applet but no link is installed); fails when neither exists.
_mt_cmd() {
    if command -v "$1" >/dev/null 2>&1; then
        printf '%s\n' "$1"
        return 0
    fi
    if command -v busybox >/dev/null 2>&1; then
        for _mt_a in $(busybox --list 2>/dev/null); do
            if [ "$_mt_a" = "$1" ]; then
                printf 'busybox %s\n' "$1"
                return 0
            fi
        done
    fi
    return 1
}

_mt_is_loopback() {
    case $1 in
        127.* | ::1) return 0 ;;
        *) return 1 ;;
    esac
}

# _mt_pick: reads addresses, one a line, prints the first IPv4 one, else the first IPv6 one.
_mt_pick() {
    _mt_v6=
    while IFS= read -r _mt_l; do
        case $_mt_l in
            *:*) [ -n "$_mt_v6" ] || _mt_v6=$_mt_l ;;
            *.*)
                printf '%s\n' "$_mt_l"
                return 0
                ;;
        esac
    done
    [ -n "$_mt_v6" ] && printf '%s\n' "$_mt_v6"
    return 0
}

# _mt_nslookup_addresses: reads `nslookup` output, prints the addresses of the answer (the
# `Address:` lines after the first `Name:` line; the ones before it are the server's).
_mt_nslookup_addresses() {
    _mt_seen=
    while IFS= read -r _mt_l; do
        case $_mt_l in
            Name:*) _mt_seen=1 ;;
            Address:* | Address\ *)
                if [ -n "$_mt_seen" ]; then
                    _mt_v=${_mt_l#Address}
                    # shellcheck disable=SC2086
                    set -- ${_mt_v#:}
                    [ $# -gt 0 ] && printf '%s\n' "$1"
                fi
                ;;
        esac
    done
}

# _mt_resolve NAME: the first address of NAME (IPv4 preferred), or nothing. Bounded to 3 s, as
# the binary's own probe. DNS_CLUSTER_RESOLVER (`ip:port`) is honoured with nslookup, which
# takes the server as its second argument.
_mt_resolve() {
    _mt_t=$(_mt_cmd timeout) || _mt_t=
    [ -n "$_mt_t" ] && _mt_t="$_mt_t 3"
    if _mt_ns=$(_mt_cmd nslookup); then
        # shellcheck disable=SC2086
        {
            $_mt_t $_mt_ns -type=a "$1" ${DNS_CLUSTER_RESOLVER:-} 2>/dev/null | _mt_nslookup_addresses
            $_mt_t $_mt_ns -type=aaaa "$1" ${DNS_CLUSTER_RESOLVER:-} 2>/dev/null | _mt_nslookup_addresses
        } | _mt_pick
    elif _mt_ge=$(_mt_cmd getent); then
        # getent asks the system resolver (/etc/resolv.conf), not DNS_CLUSTER_RESOLVER.
        # shellcheck disable=SC2086
        $_mt_t $_mt_ge ahosts "$1" 2>/dev/null | while read -r _mt_a _mt_rest; do
            printf '%s\n' "$_mt_a"
        done | _mt_pick
    fi
}

# _mt_peer_hint: the first address the first resolvable name of DNS_CLUSTER_QUERY gives, as the
# binary's probe: names in order, SRV names (first label starting with `_`) skipped.
_mt_peer_hint() {
    _mt_q=${DNS_CLUSTER_QUERY:-}
    [ -n "$_mt_q" ] || return 0
    _mt_ifs=$IFS
    IFS=,
    # shellcheck disable=SC2086
    set -- $_mt_q
    IFS=$_mt_ifs
    for _mt_n in "$@"; do
        # shellcheck disable=SC2086
        set -- $_mt_n # trims blanks
        _mt_n=${1:-}
        case $_mt_n in
            '' | ignore | _*) continue ;;
        esac
        _mt_h=$(_mt_resolve "$_mt_n")
        if [ -n "$_mt_h" ]; then
            printf '%s\n' "$_mt_h"
            return 0
        fi
    done
}

# _mt_route_source PEER: the local address the routing table uses to reach PEER (what the
# binary's UDP "connect" asks the kernel; nothing is sent). A loopback source for a
# non-loopback peer does not count.
_mt_route_source() {
    _mt_p=$1
    _mt_ip=$(_mt_cmd ip) || return 0
    # shellcheck disable=SC2086
    set -- $($_mt_ip route get "$_mt_p" 2>/dev/null)
    while [ $# -gt 1 ]; do
        if [ "$1" = src ]; then
            _mt_is_loopback "$2" && ! _mt_is_loopback "$_mt_p" && return 0
            printf '%s\n' "$2"
            return 0
        fi
        shift
    done
}

# _mt_etc_hosts: the single non-loopback address /etc/hosts gives this host's name (the one
# in /etc/hostname, compared without case); nothing when there are none or several. Docker
# writes one line per user network, none for ingress and docker_gwbridge.
_mt_etc_hosts() {
    [ -r /etc/hostname ] && [ -r /etc/hosts ] || return 0
    read -r _mt_hn _mt_rest </etc/hostname || [ -n "${_mt_hn:-}" ] || return 0
    _mt_hn=$(printf '%s\n' "$_mt_hn" | tr '[:upper:]' '[:lower:]')
    [ -n "$_mt_hn" ] || return 0
    _mt_one=
    for _mt_a in $(tr '[:upper:]' '[:lower:]' </etc/hosts | while read -r _mt_ip _mt_names; do
        _mt_ip=${_mt_ip%%#*}
        _mt_names=${_mt_names%%#*}
        case $_mt_ip in
            '' | *[!0-9a-f.:]*) continue ;; # a comment, or not an address
        esac
        _mt_is_loopback "$_mt_ip" && continue
        for _mt_x in $_mt_names; do
            if [ "$_mt_x" = "$_mt_hn" ]; then
                printf '%s\n' "$_mt_ip"
                break
            fi
        done
    done); do
        if [ -z "$_mt_one" ]; then
            _mt_one=$_mt_a
        elif [ "$_mt_one" != "$_mt_a" ]; then
            return 0 # several networks: ambiguous
        fi
    done
    [ -n "$_mt_one" ] && printf '%s\n' "$_mt_one"
    return 0
}

# _mt_first_ipv4: the first non-loopback IPv4 address of the interfaces, in interface order.
_mt_first_ipv4() {
    _mt_ip=$(_mt_cmd ip) || return 0
    # shellcheck disable=SC2086
    $_mt_ip -o -4 addr show 2>/dev/null | while read -r _mt_i _mt_if _mt_fam _mt_a _mt_rest; do
        [ "$_mt_fam" = inet ] || continue
        _mt_a=${_mt_a%%/*}
        _mt_is_loopback "$_mt_a" && continue
        printf '%s\n' "$_mt_a"
        break
    done
}

# _mt_own_address: the host part of the default node name. The same three steps, in the same
# order, as the binary (crates/discovery/src/own_address.rs `own_ip`, with the DNS probe of
# crates/minotaur/src/node.rs `resolve_node_name`):
#   1. the source address the routing table picks to reach the first peer DNS_CLUSTER_QUERY
#      resolves to: the address on the network shared with the peers, right also when the
#      container has several networks (`$(hostname -I)` of the Elixir seed picks the first
#      interface, often the wrong one);
#   2. else the single address /etc/hosts gives this host's name;
#   3. else the first non-loopback IPv4 address of the interfaces.
_mt_own_address() {
    _mt_peer=$(_mt_peer_hint)
    if [ -n "$_mt_peer" ]; then
        _mt_src=$(_mt_route_source "$_mt_peer")
        if [ -n "$_mt_src" ]; then
            printf '%s\n' "$_mt_src"
            return 0
        fi
    fi
    _mt_src=$(_mt_etc_hosts)
    [ -n "$_mt_src" ] || _mt_src=$(_mt_first_ipv4)
    [ -n "$_mt_src" ] && printf '%s\n' "$_mt_src"
    return 0
}

# RELEASE_NODE. Why env.sh computes and exports it instead of leaving it to the binary:
# - the node (`start`) and a console started later by `docker exec` must agree on the name,
#   and the binary's console path does not ask DNS (it uses steps 2 and 3 only), so with two
#   networks a console left to its default would look for the node at the wrong address;
# - so `start` computes the name here with the binary's rule (above), exports it (the binary
#   then takes it as given) and records it in $RELEASE_TMP/minotaur.node (default /tmp); a
#   console (the wrapper) reuses the recorded name, and computes it the same way only when
#   there is no record (the node was not started by the entrypoint).
# Only for long names (`name`) and only when RELEASE_NODE is unset: a name the operator gave,
# a bare basename included, goes to the binary untouched (a bare one with DNS_CLUSTER_QUERY is
# refused there with exit 2, naming RELEASE_NODE). For `sname` the binary uses the short host
# name and for `none` there is no cluster name, so both are left to it. When no address is
# found RELEASE_NODE stays unset and the binary reports that itself.
if [ -z "${RELEASE_NODE+set}" ] && [ "$RELEASE_DISTRIBUTION" = name ]; then
    _mt_node=
    if [ -n "${RELEASE_COMMAND:-}" ] && [ "$RELEASE_COMMAND" != start ] && [ -r "$_mt_record" ]; then
        read -r _mt_node _mt_rest <"$_mt_record" || true
    fi
    if [ -z "$_mt_node" ]; then
        _mt_addr=$(_mt_own_address)
        [ -n "$_mt_addr" ] && _mt_node="minotaur@$_mt_addr"
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

unset _mt_record _mt_node _mt_addr _mt_rest
unset -f _mt_cmd _mt_is_loopback _mt_pick _mt_nslookup_addresses _mt_resolve _mt_peer_hint \
    _mt_route_source _mt_etc_hosts _mt_first_ipv4 _mt_own_address
