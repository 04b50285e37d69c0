# benches/lib.sh — sourced by compare.sh, connections.sh and soak.sh: their work directory, the processes
# they start and the waits for them, in one place. Sourcing scripts set ME (their name, for
# messages) and PREFIX (the work directory's prefix) first; KEEP=1 keeps the work directory.
WORK=$(mktemp -d "/tmp/$PREFIX.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n ${KEEP:-} ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# start NAME CMD... : runs CMD in its own process group, stdout/stderr to $WORK/NAME.{out,log}.
start() {
    local name=$1; shift
    setsid "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" </dev/null &
    PIDS+=($!)
    LAST_PID=$!
}
# wait_line FILE PATTERN : the first line of FILE matching PATTERN (10 s at most).
wait_line() {
    local i
    for i in $(seq 100); do
        if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "$ME: no line matching '$2' in $1 within 10 s:" >&2
    tail -20 "${1%.out}.log" >&2 || true
    return 1
}
port_of() { sed -E 's/.*:([0-9]+)$/\1/'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_port PORT : until something listens on 127.0.0.1:PORT (10 s at most).
wait_port() {
    local i
    for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "$ME: nothing listens on 127.0.0.1:$1 within 10 s" >&2
    return 1
}
