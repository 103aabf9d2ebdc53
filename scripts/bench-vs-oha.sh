#!/usr/bin/env bash
# embatch's request rate beside oha's, against the same emulator at the same concurrency.
#
# oha (a fast HTTP load generator) sends the reads a run makes (each account's entity, roles
# and scopes, with the session header) as fast as the emulator answers; embatch then applies a
# plan of four rows per account (two roles, a scope, the restore-all-VMs flag) with a rate limit
# too high to matter, recording every request in its audit log. The ratio embatch/oha says how
# close embatch comes to the fastest client the emulator can serve; the target is >= 0.7.
#
# embatch runs twice, each time against a freshly started emulator in the same state: with the
# audit log on disk (every request waits for its intent's fsync, as in production) and, where
# /dev/shm exists, on tmpfs (fsync costs nothing), which shows what the rest of embatch costs.
#
# Usage: scripts/bench-vs-oha.sh   (environment: CONCURRENCY=32 ACCOUNTS=25000 DURATION=15
#                                   WIRE=xml; AUDIT_DIR to put the on-disk audit log elsewhere)
# Builds what it needs (the release binary, and oha with `cargo install oha` when missing) and
# stops every process it started, however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

CONCURRENCY=${CONCURRENCY:-32}
ACCOUNTS=${ACCOUNTS:-25000}
DURATION=${DURATION:-15}
WIRE=${WIRE:-xml}

work=$(mktemp -d)
emulator_pid=

stop_emulator() {
    if [[ -n $emulator_pid ]]; then
        kill "$emulator_pid" 2>/dev/null || true
        wait "$emulator_pid" 2>/dev/null || true
        emulator_pid=
    fi
}

cleanup() {
    stop_emulator
    rm -rf "$work"
}
trap cleanup EXIT
# Signals end the script through exit, so the EXIT trap above still stops the emulator (a
# closed output pipe, as with `| head`, would otherwise kill the shell without it).
trap 'exit 130' INT TERM HUP
trap 'exit 141' PIPE

if ! command -v oha >/dev/null 2>&1; then
    echo "installing oha (cargo install oha) ..." >&2
    cargo install oha --locked
    export PATH="$HOME/.cargo/bin:$PATH"
fi
echo "building embatch (release) ..." >&2
cargo build --release --locked --bin embatch >&2
embatch=./target/release/embatch

# Starts the emulator on a free port and sets $base to its API URL.
start_emulator() {
    # Created here, not by the background job's redirection, so the first read cannot race it.
    : >"$work/emulator.log"
    "$embatch" emulator --listen 127.0.0.1:0 --accounts "$ACCOUNTS" >"$work/emulator.log" 2>&1 &
    emulator_pid=$!
    base=
    for _ in $(seq 1 300); do
        base=$(sed -n 's|^Enterprise Manager emulator listening on \(http://[^ ]*\)/$|\1|p' \
            "$work/emulator.log")
        [[ -n $base ]] && return 0
        kill -0 "$emulator_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "the emulator did not start:" >&2
    cat "$work/emulator.log" >&2
    exit 1
}

# CPU seconds the emulator has used so far (utime + stime, in clock ticks of 1/100 s).
emulator_cpu() {
    awk '{ sub(/.*\) /, ""); print ($12 + $13) / 100 }' "/proc/$emulator_pid/stat"
}

# Logs on with curl and prints the session token.
logon() {
    curl -sS -D - -o /dev/null -X POST -u 'admin:emulator' "$base/sessionMngr/?v=latest" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-restsvcsessionid" { print $2 }'
}

accept=application/xml
[[ $WIRE == json ]] && accept=application/json

# The plan: the generated accounts TECH\user00001... by name, four rows each.
awk -v n="$ACCOUNTS" 'BEGIN {
    print "account,action,target,object_name,ticket"
    for (i = 1; i <= n; i++) {
        a = sprintf("TECH\\user%05d", i)
        print a ",assign-role,Exchange Restore Operator,,BENCH-1"
        print a ",assign-role,urn:veeam:EnterpriseRole:e9d90e66-b6d4-49dc-8986-73cf33489623,,BENCH-1"
        printf "%s,add-scope,urn:VMware:ResourcePool:7a1c2e3d-4b5f-4a60-8c71-92d3e4f5a6b7.bench-%d,Bench-%d,BENCH-1\n", a, i, i
        print a ",restore-all-vms,on,,BENCH-1"
    }
}' >"$work/plan.csv"

# Applies the plan with the audit log at $1 and prints "requests seconds".
run_embatch() {
    local db=$1 out
    rm -f "$db" "$db-wal" "$db-shm"
    out=$(EMBATCH_URL="$base" EMBATCH_USER=admin EMBATCH_PASSWORD=emulator \
        "$embatch" apply "$work/plan.csv" --wire "$WIRE" --concurrency "$CONCURRENCY" \
        --rate 1000000000 --burst 1000 --db "$db" --output json) || {
        echo "embatch apply failed: $out" >&2
        exit 1
    }
    rm -f "$db" "$db-wal" "$db-shm"
    local requests secs
    requests=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<<"$out")
    secs=$(sed -n 's/.*"elapsed_secs":\([0-9.e+-]*\).*/\1/p' <<<"$out")
    echo "$requests $secs"
}

start_emulator
token=$(logon)
[[ -n $token ]] || { echo "logon failed" >&2; exit 1; }

# The reads of every account in the plan, for oha to cycle through.
curl -sS -H "X-RestSvcSessionId: $token" "$base/security/accounts" |
    grep -o 'urn:veeam:EnterpriseAccount:[0-9a-f-]\{36\}' | sed 's/.*://' |
    while read -r id; do
        echo "$base/security/accounts/$id?format=Entity"
        echo "$base/security/accounts/$id/roles"
        echo "$base/security/accounts/$id/scopes"
    done >"$work/urls.txt"

echo "oha: $(wc -l <"$work/urls.txt") read URLs, concurrency $CONCURRENCY, ${DURATION} s ..." >&2
cpu0=$(emulator_cpu)
oha --no-tui --output-format json -z "${DURATION}s" -c "$CONCURRENCY" --urls-from-file \
    -H "X-RestSvcSessionId: $token" -A "$accept" "$work/urls.txt" >"$work/oha.json"
# oha pretty-prints its JSON; the summary's first two numbers are all this needs.
summary_number() {
    grep -o "\"$1\": *[0-9.e+-]*" "$work/oha.json" | head -n1 | sed 's/.*: *//'
}
oha_rps=$(summary_number requestsPerSec)
oha_ok=$(summary_number successRate)
oha_emu_us=$(awk -v a="$cpu0" -v b="$(emulator_cpu)" -v r="$oha_rps" -v d="$DURATION" \
    'BEGIN { printf "%.1f", (b - a) * 1e6 / (r * d) }')
[[ -n $oha_rps ]] || { echo "no requestsPerSec in oha's output" >&2; exit 1; }

echo "embatch: $((ACCOUNTS * 4)) rows, audit log on disk ..." >&2
stop_emulator
start_emulator
cpu0=$(emulator_cpu)
read -r disk_requests disk_secs < <(run_embatch "${AUDIT_DIR:-$work}/bench-audit.db")
disk_emu_us=$(awk -v a="$cpu0" -v b="$(emulator_cpu)" -v r="$disk_requests" \
    'BEGIN { printf "%.1f", (b - a) * 1e6 / r }')
stop_emulator

shm_line=
if [[ -d /dev/shm && -w /dev/shm ]]; then
    start_emulator
    echo "embatch: $((ACCOUNTS * 4)) rows, audit log on tmpfs ..." >&2
    read -r shm_requests shm_secs < <(run_embatch "/dev/shm/embatch-bench-$$.db")
    stop_emulator
    shm_line=$(awk -v r="$shm_requests" -v s="$shm_secs" -v o="$oha_rps" 'BEGIN {
        printf "embatch (audit log on tmpfs): %8.0f requests/s (%d requests in %.2f s)  ratio %.2f", r / s, r, s, r / s / o }')
fi

echo
echo "concurrency $CONCURRENCY, $ACCOUNTS accounts, $WIRE, $(nproc) CPUs"
awk -v r="$oha_rps" -v ok="$oha_ok" -v e="$oha_emu_us" 'BEGIN {
    printf "oha (reads):                  %8.0f requests/s (success rate %.3f; emulator CPU %s us/request)\n", r, ok, e }'
awk -v r="$disk_requests" -v s="$disk_secs" -v o="$oha_rps" -v e="$disk_emu_us" 'BEGIN {
    printf "embatch (audit log on disk):  %8.0f requests/s (%d requests in %.2f s; emulator CPU %s us/request)  ratio %.2f\n", r / s, r, s, e, r / s / o }'
[[ -n $shm_line ]] && echo "$shm_line"
echo "target: ratio >= 0.7"
