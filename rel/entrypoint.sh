#!/bin/sh
# rel/entrypoint.sh: the image's ENTRYPOINT (/app/bin/entrypoint.sh), CMD defaults to `start`.
#
# Sources env.sh (RELEASE_DISTRIBUTION, RELEASE_NODE computed for the network shared with the
# peers, the cookie file checked), then `exec`s the real binary: the shell is replaced, so the
# binary is PID 1 and receives the SIGTERM of `docker stop` / a Swarm update itself (it
# installs its own handler, drains and exits 0 within SHUTDOWN_TIMEOUT_MS). No init is needed.
#
#   docker run IMAGE                 -> minotaur start
#   docker run IMAGE rpc nodes       -> minotaur rpc nodes (any subcommand works)
#   docker run --entrypoint sh IMAGE -> a shell, for debugging
RELEASE_ROOT="${RELEASE_ROOT:-/app}"
[ $# -gt 0 ] || set -- start
RELEASE_COMMAND=$1
. "$RELEASE_ROOT/rel/env.sh"
unset RELEASE_COMMAND
exec "$RELEASE_ROOT/bin/minotaur.bin" "$@"
