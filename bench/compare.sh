#!/usr/bin/env bash
# Side-by-side benchmark: llama.cpp's llama-bench against `mixture bench`, same GGUF, same
# threads, same -p/-n/-r, one model after the other in one run (see bench/README.md).
#
#   bench/compare.sh                                  # the default models (below), all threads
#   bench/compare.sh -t 2 -r 2 --out /tmp/cmp.json
#   bench/compare.sh -m a.gguf -m b.gguf -p 512 -n 128 -r 5
#   bench/compare.sh --llama-only ...                 # skip mixture (or --mixture-only)
#
# Options:
#   -m, --model PATH   a GGUF to benchmark (repeatable). Default: under $MIXTURE_CACHE
#                      (~/.cache/mixture) bench/deepseek-v2-lite-random.{q4_k_m,q8_0}.gguf,
#                      bench/deepseek-v3-small-random.q4_k_m.gguf and
#                      models/SmolLM2-135M-Instruct.Q4_1.gguf. Missing files are reported, not fatal.
#   -t, --threads T    threads for both engines (default: physical cores, from lscpu)
#   -r, --repetitions R  timed repetitions of each test (default 5)
#   -p N / -n N        prompt tokens (pp) / generated tokens (tg) (default 512 / 128)
#   --out FILE         also write all results as JSON there
#   --llama-only / --mixture-only
#   --no-warm          do not read each model file once (cat > /dev/null) before its runs
#   --no-drop-caches   do not empty the page cache before each engine's runs (the default, when
#                      /proc/sys/vm/drop_caches is writable, i.e. as root: otherwise the files of
#                      earlier runs crowd the page cache and the engine run under memory pressure,
#                      which cost llama.cpp up to 5x on V2-Lite Q4_K_M in one run, see BENCHMARKS.md)
#
# It builds nothing itself beyond calling tools/build_llama_cpp.sh llama-bench (idempotent:
# seconds when already built; ~15 min the first time) to locate llama-bench, and
# `cargo build --release` when target/release/mixture is missing. LLAMA_BENCH=/path overrides
# the first, MIXTURE_BIN=/path the second.
#
# Peak RSS: /usr/bin/time -f %M when present, else the children's ru_maxrss read by python3.
# Both count the model's mmap'ed pages that were touched, for both engines alike.
# Raw outputs (JSON, stderr, RSS) are kept in a temporary folder whose path is printed.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CACHE="${MIXTURE_CACHE:-$HOME/.cache/mixture}"

MODELS=()
THREADS=""
REPS=5
NP=512
NG=128
OUT=""
RUN_LLAMA=1
RUN_MIXTURE=1
WARM=1
DROP=1
while [ "$#" -gt 0 ]; do
  case "$1" in
    -m|--model) MODELS+=("$2"); shift 2 ;;
    -t|--threads) THREADS="$2"; shift 2 ;;
    -r|--repetitions) REPS="$2"; shift 2 ;;
    -p|--n-prompt) NP="$2"; shift 2 ;;
    -n|--n-gen) NG="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --llama-only) RUN_MIXTURE=0; shift ;;
    --mixture-only) RUN_LLAMA=0; shift ;;
    --no-warm) WARM=0; shift ;;
    --no-drop-caches) DROP=0; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "${#MODELS[@]}" -eq 0 ]; then
  MODELS=(
    "$CACHE/bench/deepseek-v2-lite-random.q4_k_m.gguf"
    "$CACHE/bench/deepseek-v2-lite-random.q8_0.gguf"
    "$CACHE/bench/deepseek-v3-small-random.q4_k_m.gguf"
    "$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  )
fi
if [ -z "$THREADS" ]; then
  THREADS="$(lscpu -p=core,socket 2>/dev/null | grep -v '^#' | sort -u | wc -l)"
  [ "$THREADS" -ge 1 ] 2>/dev/null || THREADS="$(nproc)"
fi

# --- locate the two programs ---------------------------------------------------------------
LB="${LLAMA_BENCH:-}"
if [ "$RUN_LLAMA" = 1 ] && [ -z "$LB" ]; then
  if BIN="$("$ROOT/tools/build_llama_cpp.sh" llama-bench | tail -n 1)"; then
    LB="$BIN/llama-bench"
  fi
  if [ ! -x "$LB" ]; then
    echo "llama-bench not available (tools/build_llama_cpp.sh failed); llama.cpp side skipped" >&2
    LB=""
  fi
fi
MX="${MIXTURE_BIN:-}"
if [ "$RUN_MIXTURE" = 1 ] && [ -z "$MX" ]; then
  MX="$ROOT/target/release/mixture"
  if [ ! -x "$MX" ]; then
    echo "building target/release/mixture (cargo build --release)..." >&2
    (cd "$ROOT" && cargo build --release >&2) || true
  fi
  if [ ! -x "$MX" ]; then
    echo "mixture binary not available; mixture side skipped" >&2
    MX=""
  fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mixture-compare.XXXXXX")"
echo "raw outputs: $WORK" >&2

# run NAME CMD... : stdout -> $WORK/NAME.out, stderr -> .err, peak RSS (KiB) -> .rss,
# exit status -> .rc, wall seconds -> .wall
run() {
  local name="$1"; shift
  local t0 t1 rc
  t0="$(date +%s.%N)"
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f %M -o "$WORK/$name.rss" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    rc=$?
  else
    python3 -c '
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:], stdout=open(sys.argv[1] + ".out", "wb"),
                     stderr=open(sys.argv[1] + ".err", "wb"))
open(sys.argv[1] + ".rss", "w").write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)' "$WORK/$name" "$@"
    rc=$?
  fi
  t1="$(date +%s.%N)"
  echo "$rc" >"$WORK/$name.rc"
  python3 -c "print(round($t1 - $t0, 1))" >"$WORK/$name.wall"
  return 0
}

# Before each engine's runs: an empty page cache (when allowed), then the model file read once,
# so both engines start from the same state whatever ran before.
prepare() {
  local i="$1" M="$2" t0
  if [ "$DROP" = 1 ] && [ -w /proc/sys/vm/drop_caches ]; then
    sync
    echo 3 >/proc/sys/vm/drop_caches
  fi
  if [ "$WARM" = 1 ]; then
    # llama.cpp mmaps and would otherwise read the experts from disk during its first runs
    t0="$(date +%s)"
    cat "$M" >/dev/null
    echo "[$i] page cache warmed ($(basename "$M"), $(( $(date +%s) - t0 )) s)" >&2
  fi
}

i=0
: >"$WORK/models.txt"
for M in "${MODELS[@]}"; do
  i=$((i + 1))
  echo "$i	$M" >>"$WORK/models.txt"
  if [ ! -f "$M" ]; then
    echo "[$i] $M: missing, skipped" >&2
    continue
  fi
  if [ -n "$LB" ]; then
    prepare "$i" "$M"
    echo "[$i] llama-bench  -m $(basename "$M") -p $NP -n $NG -t $THREADS -r $REPS ..." >&2
    run "$i.llama" "$LB" -m "$M" -p "$NP" -n "$NG" -t "$THREADS" -r "$REPS" -o json
    echo "    done in $(cat "$WORK/$i.llama.wall") s (rc $(cat "$WORK/$i.llama.rc"))" >&2
  fi
  if [ -n "$MX" ]; then
    prepare "$i" "$M"
    echo "[$i] mixture bench --model $(basename "$M") -p $NP -n $NG --threads $THREADS --repetitions $REPS ..." >&2
    run "$i.mixture" "$MX" bench --model "$M" -p "$NP" -n "$NG" --threads "$THREADS" --repetitions "$REPS" --json
    echo "    done in $(cat "$WORK/$i.mixture.wall") s (rc $(cat "$WORK/$i.mixture.rc"))" >&2
  fi
done

# --- table and JSON ------------------------------------------------------------------------
LSCPU_MODEL="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
python3 - "$WORK" "$NP" "$NG" "$THREADS" "$REPS" "$OUT" "$LB" "$MX" "$LSCPU_MODEL" <<'PY'
import datetime, json, os, sys

work, npr, ngen, threads, reps, out, lb, mx, cpu = sys.argv[1:]
npr, ngen, threads, reps = int(npr), int(ngen), int(threads), int(reps)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def tail(text, n=6):
    return "\n".join((text or "").strip().splitlines()[-n:])


def side(i, name):
    """Parsed result of one program on one model, or a dict with 'error'."""
    base = os.path.join(work, f"{i}.{name}")
    rc = read(base + ".rc")
    if rc is None:
        return None
    res = {"rc": int(rc), "wall_s": float(read(base + ".wall") or "nan")}
    rss = (read(base + ".rss") or "").strip().splitlines()
    try:
        res["peak_rss_mib"] = round(int(rss[-1]) / 1024, 1)
    except (IndexError, ValueError):
        res["peak_rss_mib"] = None
    stdout = read(base + ".out") or ""
    try:
        data = json.loads(stdout)
    except ValueError:
        data = None
    if name == "llama":
        rows = data if isinstance(data, list) else []
        for r in rows:
            if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0:
                res["pp_tokens_per_s"], res["pp_stdev"] = r["avg_ts"], r["stddev_ts"]
            elif r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0:
                res["tg_tokens_per_s"], res["tg_stdev"] = r["avg_ts"], r["stddev_ts"]
        if rows:
            r0 = rows[0]
            for k in ("build_commit", "build_number", "cpu_info", "model_type", "model_size",
                      "model_n_params", "type_k", "type_v", "n_batch", "n_ubatch"):
                if k in r0:
                    res[k] = r0[k]
    else:
        if isinstance(data, dict):
            res.update(data)
    if res["rc"] != 0 or ("pp_tokens_per_s" not in res and "tg_tokens_per_s" not in res):
        res["error"] = tail(read(base + ".err")) or "no output"
    return res


models = [l.split("\t", 1) for l in (read(os.path.join(work, "models.txt")) or "").splitlines()]
results = []
for i, path in models:
    llama, mixture = side(i, "llama"), side(i, "mixture")
    entry = {"model": path, "exists": os.path.isfile(path), "llama_cpp": llama, "mixture": mixture}
    if os.path.isfile(path):
        entry["file_bytes"] = os.path.getsize(path)
    for t in ("pp", "tg"):
        a = (llama or {}).get(f"{t}_tokens_per_s")
        b = (mixture or {}).get(f"{t}_tokens_per_s")
        entry[f"{t}_ratio"] = (b / a) if a and b else None
    bound = (mixture or {}).get("bound_tokens_per_s")
    a = (llama or {}).get("tg_tokens_per_s")
    entry["llama_cpp_bound_fraction"] = (a / bound) if a and bound else None
    results.append(entry)


def ts(res, t):
    if not res:
        return "-"
    v = res.get(f"{t}_tokens_per_s")
    if v is None:
        return "missing" if "error" in res else "-"
    sd = res.get(f"{t}_stdev") or 0.0
    return f"{v:.2f} ± {sd:.2f}"


def num(v, fmt):
    return "-" if v is None else format(v, fmt)


head = ["model", f"pp{npr} llama.cpp", f"pp{npr} mixture", "ratio",
        f"tg{ngen} llama.cpp", f"tg{ngen} mixture", "ratio",
        "RSS MiB llama.cpp", "RSS MiB mixture", "bound frac mixture (llama.cpp)"]
rows = []
for e in results:
    ll, mx_ = e["llama_cpp"], e["mixture"]
    if not e["exists"]:
        rows.append([os.path.basename(e["model"]), "file missing"] + [""] * (len(head) - 2))
        continue
    bf = num((mx_ or {}).get("bound_fraction"), ".2f")
    lbf = num(e["llama_cpp_bound_fraction"], ".2f")
    rows.append([
        os.path.basename(e["model"]),
        ts(ll, "pp"), ts(mx_, "pp"), num(e["pp_ratio"], ".2f"),
        ts(ll, "tg"), ts(mx_, "tg"), num(e["tg_ratio"], ".2f"),
        num((ll or {}).get("peak_rss_mib"), ".0f"), num((mx_ or {}).get("peak_rss_mib"), ".0f"),
        f"{bf} ({lbf})",
    ])
w = [max(len(str(r[c])) for r in rows + [head]) for c in range(len(head))]
kernels = next((e["mixture"]["kernels"] for e in results
                if isinstance(e.get("mixture"), dict) and e["mixture"].get("kernels")), None)
print(f"threads {threads}, repetitions {reps}, -p {npr} -n {ngen}; tokens/s mean ± stdev; "
      f"ratio = mixture / llama.cpp; CPU: {cpu}" + (f"; mixture kernels: {kernels}" if kernels else ""))
print(" | ".join(h.ljust(w[c]) for c, h in enumerate(head)))
print("-+-".join("-" * x for x in w))
for r in rows:
    print(" | ".join(str(v).ljust(w[c]) for c, v in enumerate(r)))
for e in results:
    for name in ("llama_cpp", "mixture"):
        r = e[name]
        if r and "error" in r:
            print(f"\n{os.path.basename(e['model'])}: {name} failed (rc {r['rc']}):\n{r['error']}")
if out:
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu, "threads": threads, "repetitions": reps, "n_prompt": npr, "n_gen": ngen,
        "llama_bench": lb or None, "mixture": mx or None, "raw_dir": work, "results": results,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"\nJSON: {out}")
PY
