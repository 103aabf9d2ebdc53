#!/usr/bin/env bash
# embatch's request rate beside oha's, against the same emulator at the same concurrency, and
# embatch's run time beside a Python script's applying the same plan.
#
# oha (a fast HTTP load generator) sends the reads a run makes (each account's entity, roles
# and scopes, with the session header) as fast as the emulator answers; embatch then applies a
# plan of four rows per account (two roles, a scope, the restore-all-VMs flag) with a rate limit
# too high to matter, recording every request in its audit log. The ratio embatch/oha says how
# close embatch comes to the fastest client the emulator can serve; the target is >= 0.5.
#
# Each client's CPU time per request is its own process's (user + system, from the rusage the
# shell collects when it reaps that process; the emulator is reaped later and counts in
# neither). oha's is the floor for sending a request and reading its answer; the target for
# embatch/oha is <= 2.5.
#
# embatch runs twice, each time against a freshly started emulator in the same state: with the
# audit log on disk (every request waits for its intent's fsync, as in production) and, where
# /dev/shm exists, on tmpfs (fsync costs nothing), which shows what the rest of embatch costs.
#
# Then scripts/apply_plan_aiohttp.py (asyncio, aiohttp and sqlite3: what an administrator would
# write instead of embatch) applies the same plan against a fresh emulator in the same state,
# its request log beside embatch's on-disk log; the target for its wall time over embatch's is
# >= 10. The emulator's state after it must be the state embatch's run left (scope ids aside,
# which the emulator draws at random), or the figures compare different work and the script
# exits 1.
#
# Usage: scripts/bench-vs-oha.sh   (environment: CONCURRENCY=32 ACCOUNTS=25000 DURATION=15
#                                   WIRE=xml; AUDIT_DIR to put the on-disk audit logs elsewhere;
#                                   FIGURES=FILE to also write the figures there, one
#                                   "name value" a line, as scripts/bench-request-path.sh reads)
# Builds what it needs (the release binary in ${CARGO_TARGET_DIR:-target}, oha with `cargo
# install oha` when missing, and a Python venv with aiohttp in
# ${CARGO_TARGET_DIR:-target}/bench-venv when missing) and stops every process it started,
# however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
# awk's numbers and bash's $EPOCHREALTIME with a decimal point, whatever the locale.
export LC_ALL=C

CONCURRENCY=${CONCURRENCY:-32}
ACCOUNTS=${ACCOUNTS:-25000}
DURATION=${DURATION:-15}
WIRE=${WIRE:-xml}
target_dir=${CARGO_TARGET_DIR:-target}

work=$(mktemp -d)
emulator_pid=
# The client being measured, while it runs.
child_pid=

stop_emulator() {
    if [[ -n $emulator_pid ]]; then
        kill "$emulator_pid" 2>/dev/null || true
        wait "$emulator_pid" 2>/dev/null || true
        emulator_pid=
    fi
}

cleanup() {
    if [[ -n $child_pid ]]; then
        kill "$child_pid" 2>/dev/null || true
        wait "$child_pid" 2>/dev/null || true
        child_pid=
    fi
    stop_emulator
    rm -rf "$work"
    rm -f "/dev/shm/embatch-bench-$$.db" "/dev/shm/embatch-bench-$$.db-wal" \
        "/dev/shm/embatch-bench-$$.db-shm"
}
trap cleanup EXIT
# Signals end the script through exit, so the EXIT trap above still stops the emulator (a
# closed output pipe, as with `| head`, would otherwise kill the shell without it).
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

if ! command -v oha >/dev/null 2>&1; then
    echo "installing oha (cargo install oha) ..." >&2
    cargo install oha --locked
    export PATH="$HOME/.cargo/bin:$PATH"
fi
echo "building embatch (release) ..." >&2
cargo build --release --locked --bin embatch >&2
embatch=$target_dir/release/embatch

venv=$target_dir/bench-venv
py=$venv/bin/python
if ! "$py" -c 'import aiohttp' 2>/dev/null; then
    echo "installing aiohttp into $venv ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet aiohttp >&2
fi
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "scripts/apply_plan_aiohttp.py needs Python 3.11 or later; $py is $("$py" -V)" >&2
    exit 1
}
py_versions=$("$py" -c 'import platform, aiohttp
print(f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}")')

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

# A digest of the emulator's accounts (names, types, flags, roles, scopes with their object
# refs and states), without the scope ids, which the emulator draws at random as scopes are
# added: two runs that made the same changes to the same start leave the same digest.
state_digest() {
    curl -sS "${base%/api}/_emulator/state" | "$py" -c '
import hashlib, json, sys
accounts = json.load(sys.stdin)["accounts"]
for account in accounts:
    for scope in account["scopes"]:
        del scope["id"]
print(hashlib.sha256(json.dumps(accounts, sort_keys=True).encode()).hexdigest())'
}

# User + system CPU seconds of the children this shell has reaped, from `times` output in $1.
children_cpu() {
    awk 'NR == 2 { split($0, f, /[ms ]+/); print f[1] * 60 + f[2] + f[3] * 60 + f[4] }' "$1"
}

# Runs "$@" in the background, so that a signal to this script stops it too, and waits for it.
# Sets $wall (seconds) and $cpu (user + system CPU seconds of that process alone: nothing else
# is reaped between the two `times`). Returns its exit status.
measured() {
    local t0 rc=0
    times >"$work/times0"
    t0=$EPOCHREALTIME
    "$@" &
    child_pid=$!
    wait "$child_pid" || rc=$?
    child_pid=
    wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
    times >"$work/times1"
    cpu=$(awk -v a="$(children_cpu "$work/times0")" -v b="$(children_cpu "$work/times1")" \
        'BEGIN { print b - a }')
    return "$rc"
}

# A number from a one-line JSON object in file $2 (embatch's and the Python script's output).
json_number() {
    sed -n "s/.*\"$1\": *\([0-9.e+-]*\).*/\1/p" "$2"
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

# Applies the plan with the audit log at $1; sets $requests, $secs (embatch's own figure), $wall
# and $cpu.
run_embatch() {
    local db=$1
    rm -f "$db" "$db-wal" "$db-shm"
    measured env EMBATCH_URL="$base" EMBATCH_USER=admin EMBATCH_PASSWORD=emulator \
        "$embatch" apply "$work/plan.csv" --wire "$WIRE" --concurrency "$CONCURRENCY" \
        --rate 1000000000 --burst 1000 --db "$db" --output json >"$work/embatch.json" || {
        echo "embatch apply failed: $(cat "$work/embatch.json")" >&2
        exit 1
    }
    rm -f "$db" "$db-wal" "$db-shm"
    requests=$(json_number requests "$work/embatch.json")
    secs=$(json_number elapsed_secs "$work/embatch.json")
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
measured oha --no-tui --output-format json -z "${DURATION}s" -c "$CONCURRENCY" --urls-from-file \
    -H "X-RestSvcSessionId: $token" -A "$accept" "$work/urls.txt" >"$work/oha.json"
oha_cpu=$cpu
# oha pretty-prints its JSON; the summary's first two numbers are all this needs.
summary_number() {
    grep -o "\"$1\": *[0-9.e+-]*" "$work/oha.json" | head -n1 | sed 's/.*: *//'
}
oha_rps=$(summary_number requestsPerSec)
oha_ok=$(summary_number successRate)
[[ -n $oha_rps ]] || { echo "no requestsPerSec in oha's output" >&2; exit 1; }
oha_emu_us=$(awk -v a="$cpu0" -v b="$(emulator_cpu)" -v r="$oha_rps" -v d="$DURATION" \
    'BEGIN { printf "%.1f", (b - a) * 1e6 / (r * d) }')
# The requests oha had answered (those cut off at the deadline did not complete).
oha_requests=$("$py" -c 'import json, sys
print(sum(json.load(open(sys.argv[1]))["statusCodeDistribution"].values()))' "$work/oha.json")
oha_cpu_us=$(awk -v c="$oha_cpu" -v r="$oha_requests" 'BEGIN { printf "%.1f", c * 1e6 / r }')

echo "embatch: $((ACCOUNTS * 4)) rows, audit log on disk ..." >&2
stop_emulator
start_emulator
cpu0=$(emulator_cpu)
run_embatch "${AUDIT_DIR:-$work}/bench-audit.db"
disk_requests=$requests disk_secs=$secs disk_wall=$wall disk_cpu=$cpu
disk_emu_us=$(awk -v a="$cpu0" -v b="$(emulator_cpu)" -v r="$disk_requests" \
    'BEGIN { printf "%.1f", (b - a) * 1e6 / r }')
disk_state=$(state_digest)
stop_emulator

shm_line=
shm_rps='' shm_ratio='' shm_cpu_us='' shm_cpu_ratio=''
if [[ -d /dev/shm && -w /dev/shm ]]; then
    start_emulator
    echo "embatch: $((ACCOUNTS * 4)) rows, audit log on tmpfs ..." >&2
    run_embatch "/dev/shm/embatch-bench-$$.db"
    stop_emulator
    read -r shm_rps shm_ratio shm_cpu_us shm_cpu_ratio < <(awk -v r="$requests" -v s="$secs" \
        -v o="$oha_rps" -v c="$cpu" -v oc="$oha_cpu_us" 'BEGIN {
        printf "%.0f %.2f %.1f %.2f\n", r / s, r / s / o, c * 1e6 / r, c * 1e6 / r / oc }')
    shm_line=$(awk -v r="$requests" -v s="$secs" -v o="$oha_rps" -v u="$shm_cpu_us" 'BEGIN {
        printf "embatch (audit log on tmpfs): %8.0f requests/s (%d requests in %.2f s; CPU %.1f us/request)  ratio %.2f", r / s, r, s, u, r / s / o }')
fi

echo "python: the same plan with scripts/apply_plan_aiohttp.py ($py_versions), request log on disk ..." >&2
start_emulator
python_db=${AUDIT_DIR:-$work}/bench-python.db
rm -f "$python_db" "$python_db-wal" "$python_db-shm"
measured env EMBATCH_URL="$base" EMBATCH_USER=admin EMBATCH_PASSWORD=emulator \
    "$py" scripts/apply_plan_aiohttp.py "$work/plan.csv" --concurrency "$CONCURRENCY" \
    --db "$python_db" >"$work/python.json" || {
    echo "scripts/apply_plan_aiohttp.py failed: $(cat "$work/python.json")" >&2
    exit 1
}
rm -f "$python_db" "$python_db-wal" "$python_db-shm"
python_requests=$(json_number requests "$work/python.json")
python_secs=$(json_number elapsed_secs "$work/python.json")
python_wall=$wall python_cpu=$cpu
python_state=$(state_digest)
stop_emulator
same_state=yes
[[ $python_state == "$disk_state" ]] || same_state=no

read -r disk_rps disk_ratio disk_cpu_us disk_cpu_ratio < <(awk -v r="$disk_requests" \
    -v s="$disk_secs" -v o="$oha_rps" -v c="$disk_cpu" -v oc="$oha_cpu_us" 'BEGIN {
    printf "%.0f %.2f %.1f %.2f\n", r / s, r / s / o, c * 1e6 / r, c * 1e6 / r / oc }')
read -r python_cpu_us python_ratio < <(awk -v r="$python_requests" -v c="$python_cpu" \
    -v w="$python_wall" -v e="$disk_wall" 'BEGIN { printf "%.1f %.1f\n", c * 1e6 / r, w / e }')

echo
echo "concurrency $CONCURRENCY, $ACCOUNTS accounts, $WIRE, $(nproc) CPUs"
awk -v r="$oha_rps" -v ok="$oha_ok" -v e="$oha_emu_us" -v u="$oha_cpu_us" 'BEGIN {
    printf "oha (reads):                  %8.0f requests/s (success rate %.3f; emulator CPU %s us/request; CPU %.1f us/request)\n", r, ok, e, u }'
awk -v r="$disk_requests" -v s="$disk_secs" -v o="$oha_rps" -v e="$disk_emu_us" \
    -v u="$disk_cpu_us" 'BEGIN {
    printf "embatch (audit log on disk):  %8.0f requests/s (%d requests in %.2f s; emulator CPU %s us/request; CPU %.1f us/request)  ratio %.2f\n", r / s, r, s, e, u, r / s / o }'
[[ -n $shm_line ]] && echo "$shm_line"
echo "target: ratio >= 0.5"
echo "CPU per request, embatch/oha (each its own process's user + system time): $disk_cpu_ratio with the audit log on disk${shm_cpu_ratio:+, $shm_cpu_ratio on tmpfs}; target <= 2.5"
awk -v r="$python_requests" -v s="$python_secs" -v w="$python_wall" -v u="$python_cpu_us" \
    -v er="$disk_requests" -v ew="$disk_wall" -v x="$python_ratio" -v v="$py_versions" 'BEGIN {
    printf "python (asyncio + aiohttp + sqlite3, json; %s): %d requests in %.2f s, %.2f s wall (CPU %.1f us/request); embatch on disk: %d requests, %.2f s wall\n", v, r, s, w, u, er, ew
    printf "wall time python/embatch: %.1f; target >= 10\n", x }'
if [[ $same_state == yes ]]; then
    echo "the emulator's state after the Python script: the same as after embatch (sha256 ${python_state:0:16}...)"
else
    echo "the emulator's state after the Python script DIFFERS from the state after embatch" \
        "($python_state against $disk_state): the figures above compare different work"
fi

if [[ -n ${FIGURES:-} ]]; then
    cat >"$FIGURES" <<EOF
oha_rps $oha_rps
oha_cpu_us $oha_cpu_us
disk_rps $disk_rps
disk_ratio $disk_ratio
disk_cpu_us $disk_cpu_us
disk_cpu_ratio $disk_cpu_ratio
shm_rps $shm_rps
shm_ratio $shm_ratio
shm_cpu_us $shm_cpu_us
shm_cpu_ratio $shm_cpu_ratio
disk_wall $disk_wall
disk_requests $disk_requests
python_wall $python_wall
python_requests $python_requests
python_cpu_us $python_cpu_us
python_ratio $python_ratio
same_state $same_state
EOF
fi
[[ $same_state == yes ]]
