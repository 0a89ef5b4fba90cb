#!/usr/bin/env bash
# The shop's own load generator against the one-process shop and against
# the fleet ("cluster up") at two sizes, in one run on one machine: the same
# shopper mix at the same arrival rates. Only ratios within a run compare.
#
#   bench/fleet/run.sh            # rates 20 and 120 sessions/s, 20 s each
#   RATES="20 60" DUR=10s bench/fleet/run.sh
#
# Needs what "cluster up" needs (PostgreSQL with pg_auto_failover, Redis and
# Sentinel). Writes the reports under a temporary directory it prints.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$PATH"
RATES=${RATES:-"20 120"}
DUR=${DUR:-20s}
work=$(mktemp -d /tmp/globo-bench-fleet-XXXXXX)
chmod 755 "$work"
bin="$work/globomantics"
go build -o "$bin" ./cmd/globomantics
echo "reports in $work" >&2

load() { # name url rate
  "$bin" load --url "$2" --rate "$3" --duration "$DUR" --max-inflight 400 --checkout-wait 10s \
    --json "$work/$1-$3.json" --html "$work/$1-$3.html" >"$work/$1-$3.txt" 2>/dev/null
}

# The one-process shop (embedded SQLite and NATS).
"$bin" serve --data-dir "$work/one" --http-addr 127.0.0.1:18480 --rate-limits=false 2>"$work/one.log" &
one=$!
for _ in $(seq 1 120); do curl -fs http://127.0.0.1:18480/readyz >/dev/null && break; sleep 0.5; done
for r in $RATES; do load one http://127.0.0.1:18480 "$r"; done
kill "$one"; wait "$one" || true

# The fleet, small (1 storefront, 1 instance of every service) and as
# shipped (3 storefronts, 2 instances of every service).
for size in "1 1" "3 2"; do
  set -- $size
  name="fleet-$1x$2"
  shop=$("$bin" cluster up --dir "$work/$name" --storefronts "$1" --instances "$2" --rate-limits=false --autoscale=false 2>"$work/$name-up.log" | head -1)
  for r in $RATES; do load "$name" "$shop" "$r"; done
  "$bin" cluster down --dir "$work/$name" 2>"$work/$name-down.log"
done

python3 - "$work" $RATES <<'PY'
import json, sys, os
work, rates = sys.argv[1], sys.argv[2:]
print(f"{'shop':<12} {'rate':>5} {'sessions/s':>10} {'requests/s':>10} {'ok':>6} {'errors':>6} {'dropped':>7} {'p50 ms':>8} {'p99 ms':>8} {'orders':>6}")
for name in ["one", "fleet-1x1", "fleet-3x2"]:
    for r in rates:
        p = os.path.join(work, f"{name}-{r}.json")
        if not os.path.exists(p):
            continue
        d = json.load(open(p))
        o = d["overall"]
        print(f"{name:<12} {r:>5} {d['achieved_rate']:>10.1f} {d['request_rate']:>10.1f} {d['ok']:>6} {d['errors']:>6} {d['dropped']:>7} {o['p50_ms']:>8.1f} {o['p99_ms']:>8.1f} {d['orders'].get('confirmed', 0):>6}")
PY
