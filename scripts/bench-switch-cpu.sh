# Shared by the scripts/bench-* comparisons (sourced): a private Redis seeded with the load
# generator's cards, and `one TREE LABEL [serve options...]`, which serves the switch of
# TREE on pos, drives it with `loadtest saturate` for 8 s and prints the throughput and the
# switch process's CPU time per answer (utime + stime from /proc, after start-up, over its
# `answered` counter: the figure a busy machine disturbs least). Needs HERE set.
PY=$HERE/.venv/bin/python
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
REDIS_PORT=$($PY -c 'from switch.redis_runner import free_port; print(free_port())')
redis-server --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes --dir "$WORK" >/dev/null
URL=redis://127.0.0.1:$REDIS_PORT/0
cd "$WORK"
"$HERE/.venv/bin/loadtest" seed --redis "$URL" >/dev/null

one() {  # tree, label, extra serve options...
  local tree=$1 label=$2; shift 2
  local port; port=$($PY -c 'from switch.redis_runner import free_port; print(free_port())')
  (cd "$tree" && SWITCH_RUN_DIR=$WORK/run-$label PYTHONPATH=$tree exec "$PY" -m switch.cli serve \
     --redis "$URL" --listen "pos=127.0.0.1:$port" "$@" >"$WORK/serve-$label.log" 2>&1) &
  local serve=$!
  for _ in $(seq 100); do grep -q "Ctrl-C" "$WORK/serve-$label.log" 2>/dev/null && break; sleep 0.1; done
  local admin; admin=$(grep -o 'metrics http://[0-9.:]*/metrics' "$WORK/serve-$label.log" | cut -d' ' -f2 || true)
  local scraper=""
  if [ -n "$admin" ]; then
    (for _ in $(seq 60); do curl -s "$admin" >/dev/null; sleep 1; done) & scraper=$!
  fi
  local start; start=$(awk '{print $14 + $15}' "/proc/$serve/stat")  # after start-up's imports
  "$HERE/.venv/bin/loadtest" saturate --target "pos=127.0.0.1:$port" --redis "$URL" --no-seed \
      --duration 8 --quiet --out "$WORK/out-$label" > "$WORK/sat-$label.txt" 2>&1
  [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
  local ticks; ticks=$(awk -v s="$start" '{print $14 + $15 - s}' "/proc/$serve/stat")
  kill -TERM "$serve"; wait "$serve" 2>/dev/null || true
  local answered; answered=$(grep -o ' answered=[0-9]*' "$WORK/serve-$label.log" | cut -d= -f2)
  local rate; rate=$(awk '$1 == "all" {print $3}' "$WORK/sat-$label.txt")
  echo "$label  saturate ${rate} req/s  switch CPU $(awk "BEGIN {printf \"%.2f\", $ticks * 10000 / $answered}") us per answer ($answered answers, $ticks ticks)"
}
