#!/usr/bin/env bash
# Every figure of the request path, measured in one run and set beside its target:
#
#   scripts/bench-vs-oha.sh   embatch/oha requests/s (>= 0.5) and CPU per request (<= 2.5), the
#                             audit log on disk and on tmpfs; the Python script's wall time
#                             over embatch's for the same plan (>= 10)
#   bench --rate 200          achieved rate within 1 % of the rate asked (3,000 requests, 15 s)
#   bench --rate 1000         the same (10,000 requests, 10 s)
#   bench --rate 5000, x10    runs in which the server refused a request (0 of 10): the
#                             emulator admits rate + burst requests per sliding second; each
#                             run sends 15,000 requests, three seconds, so that the window
#                             fills (the bench's default of 3,000 would end in 0.6 s)
#   bench --mode memory       peak RSS of an apply of 1,000,000 rows (< 150 MiB)
#   bench --mode check        seconds to check 1,000,000 rows (< 1.5 s)
#
# then a table: figure, target, measured, met or not. One step at a time, so no two measure on
# the same CPUs at once. Takes five minutes or more on two CPUs, most of it the Python script
# (one to two minutes) and the 1,000,000-row apply (two or so), once built.
#
# Usage: scripts/bench-request-path.sh   (environment: RATE_RUNS=10, the runs at 5000/s; the
#                                         rest, e.g. CONCURRENCY or AUDIT_DIR, goes through to
#                                         scripts/bench-vs-oha.sh)
# Builds the release bench example in ${CARGO_TARGET_DIR:-target} (bench-vs-oha.sh builds the
# rest). Each step runs as a process group of its own, stopped whole however this script ends.
# Exits 1 when a step gave no figure; targets not met do not change the exit status.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

RATE_RUNS=${RATE_RUNS:-10}
target_dir=${CARGO_TARGET_DIR:-target}

work=$(mktemp -d)
# The steps' temporary files go in here too, so that cleanup removes them with it, even those
# of a bench stopped by a signal (it removes its own only when it ends by itself).
mkdir "$work/tmp"
export TMPDIR=$work/tmp
# The step running (the leader of its process group) and the tail showing its output.
child_pid=
tail_pid=

cleanup() {
    if [[ -n $child_pid ]]; then
        # The whole group: bench-vs-oha.sh's emulator and clients, the bench's emulator process.
        kill -TERM -- "-$child_pid" 2>/dev/null || kill -TERM "$child_pid" 2>/dev/null || true
        wait "$child_pid" 2>/dev/null || true
        child_pid=
    fi
    if [[ -n $tail_pid ]]; then
        kill "$tail_pid" 2>/dev/null || true
        wait "$tail_pid" 2>/dev/null || true
        tail_pid=
    fi
    rm -rf "$work"
}
trap cleanup EXIT
# Signals end the script through exit, so the EXIT trap above stops the step that runs.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

echo "building the bench example (release) ..." >&2
cargo build --release --locked --example bench >&2
bench=$target_dir/release/examples/bench

# Runs "$@" with its output in file $1 and shown as it comes; returns its exit status. The step
# is a session of its own (setsid), so that a Ctrl-C reaches it only through cleanup, which
# stops its whole process group, and it runs in the background, so that this script takes a
# signal at once instead of after the step.
step() {
    local log=$1 rc=0
    shift
    : >"$log"
    setsid "$@" >"$log" 2>&1 </dev/null &
    child_pid=$!
    tail -n +1 -s 0.2 -f --pid="$child_pid" "$log" &
    tail_pid=$!
    wait "$child_pid" || rc=$?
    child_pid=
    # tail ends by itself once it has seen the step end and printed the rest of its output.
    wait "$tail_pid" || true
    tail_pid=
    return "$rc"
}

# The table's rows: figure, target, measured, verdict; tab-separated.
rows=$work/rows.tsv
: >"$rows"
failed_steps=0
row() {
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$rows"
}
# "met" or "not met": the awk condition $1 on the number $2, named x in it.
verdict() {
    awk -v x="$2" "BEGIN { print (($1) ? \"met\" : \"not met\") }"
}

echo "== scripts/bench-vs-oha.sh"
figures=$work/figures.txt
oha_rc=0
step "$work/oha.out" env FIGURES="$figures" scripts/bench-vs-oha.sh || oha_rc=$?
if [[ -s $figures ]]; then
    fig() { awk -v k="$1" '$1 == k { print $2 }' "$figures"; }
    oha_rps=$(fig oha_rps)
    oha_cpu=$(fig oha_cpu_us)
    for where in disk shm; do
        label="audit log on disk"
        [[ $where == shm ]] && label="audit log on tmpfs"
        ratio=$(fig "${where}_ratio")
        if [[ -z $ratio ]]; then
            row "embatch/oha requests/s, $label" ">= 0.5" "not measured (no /dev/shm)" "n/a"
            continue
        fi
        row "embatch/oha requests/s, $label" ">= 0.5" \
            "$ratio ($(fig "${where}_rps") vs $(printf '%.0f' "$oha_rps")/s)" \
            "$(verdict 'x >= 0.5' "$ratio")"
        cpu_ratio=$(fig "${where}_cpu_ratio")
        row "embatch/oha CPU per request, $label" "<= 2.5" \
            "$cpu_ratio ($(fig "${where}_cpu_us") vs $oha_cpu us)" \
            "$(verdict 'x <= 2.5' "$cpu_ratio")"
    done
    python_ratio=$(fig python_ratio)
    walls=$(printf '%.1f vs %.1f s' "$(fig python_wall)" "$(fig disk_wall)")
    row "Python script/embatch wall time, same plan" ">= 10" \
        "$python_ratio ($walls; $(fig python_requests) vs $(fig disk_requests) requests)" \
        "$(verdict 'x >= 10' "$python_ratio")"
    same=$(fig same_state)
    row "emulator state after the Python script" "embatch's" \
        "$([[ $same == yes ]] && echo "the same" || echo "differs")" \
        "$([[ $same == yes ]] && echo "met" || echo "not met")"
else
    row "scripts/bench-vs-oha.sh" "its figures" "none (exit $oha_rc)" "failed"
    failed_steps=$((failed_steps + 1))
fi

# The "achieved rate" line of a rate run: "<rate/s> <percent off the rate asked>".
achieved() {
    sed -n 's/^ *achieved rate *\([0-9.]*\) *\/s over .* (\([-+0-9.]*\)% of .*/\1 \2/p' "$1"
}

# Enough requests for ten seconds or more, so that the start of a run (the logon, the first
# connections) weighs little in the rate.
for rate in 200 1000; do
    requests=$((rate == 200 ? 3000 : 10000))
    echo "== bench --rate $rate --requests $requests"
    out=$work/rate-$rate.out
    got='' off=''
    if step "$out" "$bench" --rate "$rate" --requests "$requests"; then
        read -r got off < <(achieved "$out") || true
    fi
    if [[ -n $got ]]; then
        row "achieved rate at --rate $rate" "within 1 %" "$got/s ($off %)" \
            "$(verdict 'x <= 1 && x >= -1' "$off")"
    else
        row "achieved rate at --rate $rate" "within 1 %" "none (the run failed)" "failed"
        failed_steps=$((failed_steps + 1))
    fi
done

# Each run starts a fresh emulator, whose sliding window then counts this run's requests only.
refused_runs=0 runs=0 counts=''
for i in $(seq 1 "$RATE_RUNS"); do
    echo "== bench --rate 5000 --requests 15000 (run $i of $RATE_RUNS)"
    out=$work/rate-5000-$i.out
    if step "$out" "$bench" --rate 5000 --requests 15000; then
        refused=$(sed -n 's/^ *refused by server *\([0-9]*\) .*/\1/p' "$out")
    else
        refused=''
    fi
    if [[ -z $refused ]]; then
        counts+=" failed"
        continue
    fi
    runs=$((runs + 1))
    counts+=" $refused"
    if ((refused > 0)); then
        refused_runs=$((refused_runs + 1))
    fi
done
if ((runs == RATE_RUNS)); then
    row "runs at --rate 5000 with a server-side refusal" "0 of $RATE_RUNS" \
        "$refused_runs of $RATE_RUNS (refused per run:$counts)" \
        "$(verdict 'x == 0' "$refused_runs")"
else
    row "runs at --rate 5000 with a server-side refusal" "0 of $RATE_RUNS" \
        "$refused_runs of $runs runs that ended (refused per run:$counts)" "failed"
    failed_steps=$((failed_steps + 1))
fi

echo "== bench --mode memory --rows 1000000"
out=$work/memory.out
rss=''
if step "$out" "$bench" --mode memory --rows 1000000; then
    rss=$(sed -n 's/^ *peak RSS (VmHWM) *\([0-9.]*\) *MiB.*/\1/p' "$out" | tail -n1)
fi
if [[ -n $rss ]]; then
    row "peak RSS, apply of 1,000,000 rows (--mode memory)" "< 150 MiB" "$rss MiB" \
        "$(verdict 'x < 150' "$rss")"
else
    row "peak RSS, apply of 1,000,000 rows (--mode memory)" "< 150 MiB" "none (the run failed)" \
        "failed"
    failed_steps=$((failed_steps + 1))
fi

echo "== bench --mode check --rows 1000000"
out=$work/check.out
secs=''
if step "$out" "$bench" --mode check --rows 1000000; then
    secs=$(sed -n 's/^check: .* validated in \([0-9.]*\) s .*/\1/p' "$out")
fi
if [[ -n $secs ]]; then
    row "check of 1,000,000 rows (--mode check)" "< 1.5 s" "$secs s" "$(verdict 'x < 1.5' "$secs")"
else
    row "check of 1,000,000 rows (--mode check)" "< 1.5 s" "none (the run failed)" "failed"
    failed_steps=$((failed_steps + 1))
fi

echo
echo "request path, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
awk -F'\t' '
    { for (i = 1; i <= 4; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } }
    END {
        split("figure\ttarget\tmeasured\tverdict", head, "\t")
        for (i = 1; i <= 4; i++) if (length(head[i]) > w[i]) w[i] = length(head[i])
        line = ""
        for (i = 1; i <= 4; i++) line = line sprintf("%-" w[i] "s  ", head[i])
        sub(/ +$/, "", line)
        print line
        line = ""
        for (i = 1; i <= 4; i++) {
            dash = sprintf("%" w[i] "s", "")
            gsub(/ /, "-", dash)
            line = line dash "  "
        }
        sub(/ +$/, "", line)
        print line
        for (r = 1; r <= NR; r++) {
            line = ""
            for (i = 1; i <= 4; i++) line = line sprintf("%-" w[i] "s  ", cell[r, i])
            sub(/ +$/, "", line)
            print line
        }
    }' "$rows"
((failed_steps == 0))
