#!/usr/bin/env bash
# benches/compare.sh — one command, one run, one table (issue 11): the same sipedge-bench load
#   (a) generator -> sink directly (the ceiling; "proxy" CPU is then the sink's own),
#   (b) generator -> sipedge (release build) -> sink,
#   (c) generator -> Kamailio 5.6 (tm, record-route, tls, -x tlsf -X tlsf) -> sink,
#   (d) with TARGETS containing `relay`: generator -> `sipedge-bench relay` (TLS terminated, plaintext
#       copied both ways unparsed: the floor of any TLS proxy on this machine) -> sink,
# over TLS (mutual, both legs) and plain TCP (sipedge has no plain-TCP listener: its TCP row is
# absent), and prints one table with the date, nproc, the CPU model and the commit.
#
# Scenarios (SCENARIOS="max fixed bursts half"): max — as fast as the load allows (2 x 32 in
#   flight); fixed — FIXED_RATE=5000 transactions/s offered to every target (the CPU per transaction
#   where per-wake-up costs show); bursts — a front end's shape: each connection writes its 32
#   requests at once and waits for all 32 finals, and the sink answers each request with a write of
#   its own (`run --bursts`); half — each proxy at 50 % of the rate it reached in `max`, and the
#   generator straight to the sink at that same rate, so the table shows the p99 the proxy adds.
# Knobs (environment): DURATION=10 WARMUP=2 CONNS=2 INFLIGHT=32 FIXED_RATE=5000
#   TRANSPORTS="tls tcp" TARGETS="direct sipedge kamailio" NO_BUILD=1 (reuse target/release)
#   EDGE_WORKERS=n (the edge's workers; default nproc, as Kamailio's children)
#   EDGE_BEFORE=path (another sipedge binary, e.g. an earlier commit's: target sipedge-before, run
#   right before sipedge, so a change is measured side by side in one run)
#   TARGETS containing `sipedge-pool`: the same edge with [pool] on, against a redis-server of its
#   own (issue 20: what the pool costs the message path, and Redis commands per second)
#   KEEP=1 (keep the work directory: reports, configs, logs)
#   KAM_SHM_MB=4096 (Kamailio's shared memory: tm keeps each transaction for its 5 s wait timer
#   after the final response; at ~19,000/s 1024 MB ran out within 3 s, 256 within one)
# Certificates come from `sipedge-bench pki`; Kamailio from the Debian packages kamailio and
# kamailio-tls-modules (scripts/test.sh installs them). Generator and proxy share the machine:
# compare CPU µs per transaction, and read the generator's own column to see it is not the limit.
set -euo pipefail
# shellcheck source=benches/edge-config.sh
. "$(dirname "$0")/edge-config.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-2}
INFLIGHT=${INFLIGHT:-32}
FIXED_RATE=${FIXED_RATE:-5000}
SCENARIOS=${SCENARIOS:-"max fixed bursts half"}
TRANSPORTS=${TRANSPORTS:-"tls tcp"}
TARGETS=${TARGETS:-"direct sipedge kamailio"}
if [[ -n ${EDGE_BEFORE:-} && " $TARGETS " != *" sipedge-before "* ]]; then
    TARGETS=${TARGETS/sipedge/sipedge-before sipedge}
fi
CHILDREN=$(nproc)
# The edge's worker threads (Kamailio's children stay CHILDREN).
EDGE_WORKERS=${EDGE_WORKERS:-$CHILDREN}

if [[ -z ${NO_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p sipedge -p sipedge-benches --bin sipedge --bin sipedge-bench)
fi
BENCH=$ROOT/target/release/sipedge-bench
EDGE=$ROOT/target/release/sipedge
ME=compare.sh
PREFIX=sipedge-compare
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"

P=$WORK/pki
"$BENCH" pki --dir "$P"

# run SCENARIO RATE LABEL TRANSPORT TARGET SERVER_NAME CA PIDS : one generator run, its JSON
# report kept as $WORK/LABEL-TRANSPORT-SCENARIO[-RATE].json.
REPORTS=()
run() {
    local scenario=$1 rate=$2 label=$3 tr=$4 target=$5 name=$6 ca=$7 pids=$8 tls_args=() shape=()
    [[ $scenario != bursts ]] || shape=(--bursts)
    local out=$WORK/$label-$tr-$scenario.json
    [[ $label != direct || $scenario != half ]] || out=$WORK/$label-$tr-$scenario-$rate.json
    if [[ $tr == tcp ]]; then
        tls_args=(--tcp)
    else
        tls_args=(--server-name "$name" --cert "$P/fe1.corp.test.crt" --key "$P/fe1.corp.test.key" --ca "$ca")
    fi
    echo "== $label over $tr, $scenario: $CONNS connections, $INFLIGHT in flight each, rate $rate, ${DURATION}s (+${WARMUP}s warm-up)" >&2
    "$BENCH" run --target "$target" "${tls_args[@]}" "${shape[@]}" -c "$CONNS" --inflight "$INFLIGHT" --rate "$rate" \
        --duration "$DURATION" --warmup "$WARMUP" --pid "$pids" --label "$label" --scenario "$scenario" \
        --json >"$out"
    "$BENCH" table "$out" | tail -1 >&2
    REPORTS+=("$out")
}
# half_of LABEL TRANSPORT : half the transactions/s LABEL reached in its `max` run over TRANSPORT.
half_of() {
    python3 -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["tps"] / 2)))' \
        "$WORK/$1-$2-max.json"
}
# scenarios LABEL TRANSPORT TARGET SERVER_NAME CA PIDS : every scenario of SCENARIOS against one
# running proxy; `half` needs `max` first. A proxy's half rate is remembered: the generator runs
# straight to the sink at that rate at the end (the ceiling the added p99 is measured over).
HALF_RATES=()
scenarios() {
    local sc rate
    for sc in $SCENARIOS; do
        case $sc in
        max | bursts) rate=0 ;;
        fixed) rate=$FIXED_RATE ;;
        half)
            [[ $1 != direct ]] || continue
            if [[ ! -f $WORK/$1-$2-max.json ]]; then
                echo "compare.sh: the half scenario needs max before it in SCENARIOS" >&2
                continue
            fi
            rate=$(half_of "$1" "$2")
            HALF_RATES+=("$2:$rate")
            ;;
        *)
            echo "compare.sh: unknown scenario $sc" >&2
            continue
            ;;
        esac
        run "$sc" "$rate" "$@"
    done
}

declare -A SINK SINK_PID
for tr in $TRANSPORTS; do
    if [[ $tr == tcp ]]; then
        start "sink-$tr" "$BENCH" sink --listen 127.0.0.1:0 --tcp
    else
        start "sink-$tr" "$BENCH" sink --listen 127.0.0.1:0 \
            --cert "$P/edge.partner.test.crt" --key "$P/edge.partner.test.key" --ca "$P/internal-ca.pem"
    fi
    SINK_PID[$tr]=$LAST_PID
    SINK[$tr]=$(wait_line "$WORK/sink-$tr.out" '^listening ' | awk '{print $3}')
done

for target in $TARGETS; do
    case $target in
    direct)
        for tr in $TRANSPORTS; do
            scenarios direct "$tr" "${SINK[$tr]}" edge.partner.test "$P/partner-ca.pem" "${SINK_PID[$tr]}"
        done
        ;;
    relay)
        # The floor of a TLS proxy: plaintext copied both ways, nothing parsed (relay.rs).
        [[ " $TRANSPORTS " == *" tls "* ]] || continue
        start relay "$BENCH" relay --listen 127.0.0.1:0 \
            --cert "$P/edge-int.corp.test.crt" --key "$P/edge-int.corp.test.key" --ca "$P/internal-ca.pem" \
            --to "${SINK[tls]}" --to-name edge.partner.test \
            --to-cert "$P/edge.corp.test.crt" --to-key "$P/edge.corp.test.key" --to-ca "$P/partner-ca.pem"
        relay_pid=$LAST_PID
        addr=$(wait_line "$WORK/relay.out" '^listening sip\+tls ' | awk '{print $3}')
        scenarios relay tls "$addr" edge-int.corp.test "$P/internal-ca.pem" "$relay_pid"
        kill -TERM "$relay_pid" 2>/dev/null || true
        ;;
    sipedge | sipedge-before | sipedge-pool)
        [[ " $TRANSPORTS " == *" tls "* ]] || continue
        bin=$EDGE
        [[ $target != sipedge-before ]] || bin=$EDGE_BEFORE
        edge_toml "$P" "$(echo "${SINK[tls]}" | port_of)" "$EDGE_WORKERS" >"$WORK/$target.toml"
        redis_pid=""
        if [[ $target == sipedge-pool ]]; then
            # The same edge as one replica of a pool: a redis-server of its own, [pool] on.
            if ! command -v redis-server >/dev/null; then
                echo "compare.sh: redis-server is not installed (apt-get install redis-server): no sipedge-pool rows" >&2
                continue
            fi
            rport=$(free_port)
            start redis redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no
            redis_pid=$LAST_PID
            printf '\n[pool]\nredis = "redis://127.0.0.1:%s"\nreplica = "bench"\n' "$rport" >>"$WORK/$target.toml"
        fi
        start "$target" "$bin" run --config "$WORK/$target.toml"
        edge_pid=$LAST_PID
        started=$(date +%s.%N)
        addr=$(wait_line "$WORK/$target.out" '^listening internal sip\+tls ' | awk '{print $4}')
        scenarios "$target" tls "$addr" edge-int.corp.test "$P/internal-ca.pem" "$edge_pid"
        if [[ -n $redis_pid ]]; then
            # What the pool costs Redis, whatever the load: commands per second over the whole run.
            maddr=$(wait_line "$WORK/$target.out" '^metrics http ' | awk '{print $3}')
            exec 3<>"/dev/tcp/${maddr%:*}/${maddr##*:}"
            printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
            cmds=$(awk '/^sipedge_pool_redis_commands_total /{print $2}' <&3)
            exec 3<&-
            awk -v c="$cmds" -v s="$started" -v e="$(date +%s.%N)" \
                'BEGIN { printf "sipedge-pool: %d Redis commands in %.0f s, %.1f/s (the pool thread; nothing on the message path)\n", c, e - s, c / (e - s) }' >&2
            kill -TERM "$redis_pid" 2>/dev/null || true
        fi
        kill -TERM "$edge_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$edge_pid" 2>/dev/null || break; sleep 0.1; done
        ;;
    kamailio)
        KAM=$(command -v kamailio || echo /usr/sbin/kamailio)
        if [[ ! -x $KAM ]]; then
            echo "compare.sh: kamailio is not installed (apt-get install kamailio kamailio-tls-modules): no Kamailio rows" >&2
            continue
        fi
        ktls=$(free_port)
        ktcp=$(free_port)
        sed -e "s#@CERT@#$P/kamailio.corp.test.crt#" -e "s#@KEY@#$P/kamailio.corp.test.key#" \
            -e "s#@CA@#$P/all-ca.pem#" "$ROOT/benches/kamailio/kamailio-tls.cfg.in" >"$WORK/kamailio-tls.cfg"
        tls_sink="sip:${SINK[tls]:-127.0.0.1:9};transport=tls"
        tcp_sink="sip:${SINK[tcp]:-127.0.0.1:9};transport=tcp"
        sed -e "s#@CHILDREN@#$CHILDREN#" -e "s#@MAX_CONN@#4096#" -e "s#@TLS_PORT@#$ktls#" -e "s#@TCP_PORT@#$ktcp#" \
            -e "s#@TLS_CFG@#$WORK/kamailio-tls.cfg#" -e "s#@TLS_SINK@#$tls_sink#" -e "s#@TCP_SINK@#$tcp_sink#" \
            "$ROOT/benches/kamailio/kamailio.cfg.in" >"$WORK/kamailio.cfg"
        mkdir -p "$WORK/kamailio-run"
        # A fresh Kamailio per transport: the TCP run does not inherit the TLS run's transactions.
        for tr in $TRANSPORTS; do
            start "kamailio-$tr" "$KAM" -DD -E -x tlsf -X tlsf -m "${KAM_SHM_MB:-4096}" -M 16 \
                -f "$WORK/kamailio.cfg" -w "$WORK/kamailio-run" -Y "$WORK/kamailio-run"
            kam_pid=$LAST_PID
            if ! { wait_port "$ktls" && wait_port "$ktcp"; }; then
                echo "compare.sh: Kamailio did not start (no Kamailio $tr row); its log:" >&2
                tail -20 "$WORK/kamailio-$tr.log" >&2
                kill -TERM -- "-$kam_pid" 2>/dev/null || true
                continue
            fi
            sleep 0.5
            # Every process of its group: the main one and its forked workers.
            kam_pids=$(pgrep -g "$kam_pid" | paste -sd, -)
            if [[ $tr == tcp ]]; then port=$ktcp; else port=$ktls; fi
            scenarios kamailio "$tr" "127.0.0.1:$port" kamailio.corp.test "$P/internal-ca.pem" "$kam_pids"
            kill -TERM -- "-$kam_pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$kam_pid" 2>/dev/null || break; sleep 0.1; done
        done
        ;;
    esac
done

# The ceiling at each proxy's half rate: the generator and the sink alone at that rate.
if [[ " $TARGETS " == *" direct "* ]]; then
    for tr_rate in "${HALF_RATES[@]}"; do
        tr=${tr_rate%%:*}
        run half "${tr_rate#*:}" direct "$tr" "${SINK[$tr]}" edge.partner.test "$P/partner-ca.pem" "${SINK_PID[$tr]}"
    done
fi

echo
echo "sipedge-bench comparison — $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), commit $(git -C "$ROOT" rev-parse --short HEAD)"
echo "load: $CONNS connections x $INFLIGHT in flight, MESSAGE (~300-byte body) + 200 OK; scenarios: $SCENARIOS" \
    "(fixed $FIXED_RATE/s, half: 50 % of the proxy's max); ${DURATION}s measured after ${WARMUP}s; proxy and generator share the machine"
"$BENCH" table "${REPORTS[@]}"
echo "proxy µs/tx: CPU of the process under test (all its threads/processes) per completed transaction;" \
    "for direct it is the sink's. +p99: the p99 over direct's at the same offered rate." \
    "×kam: tx/s ours/Kamailio's, CPU Kamailio's/ours, same scenario (above 1: better)."
