#!/usr/bin/env bash
# GPU check: every test file and the speed table, on a GPU host with no network.
#
# The host needs what a JAX GPU machine typically has: python3 with jax[cuda], flax, optax,
# scipy, matplotlib and pytest. The package's other pure-Python dependencies travel as wheels
# in .wheels/ (made on a networked machine, from the repository root, by
#     pip download --only-binary :all: --no-deps -d .wheels \
#         pooch jaxopt platformdirs matfree
# plus any of tqdm filelock packaging requests urllib3 idna certifi charset-normalizer the host
# lacks) and are installed with --no-deps, only when missing, so the host's jax[cuda] is never
# replaced. Run from the repository root:
#     bash benchmarks/gpu_check.sh            # the speed table, then every file of tests/
#     QUICK=1 bash benchmarks/gpu_check.sh    # smoke run anywhere (small table, two test files;
#                                             # its table goes to a temp dir, not the repo)
#     JOBS=8 bash benchmarks/gpu_check.sh     # 8 test files at a time (default 1)
# The speed table runs first, on a quiet machine; its JSON lands in benchmarks/table_gpu.json
# (and $OUT/ when $OUT is set). Then each test file runs to its end in its own pytest process
# (at most $TEST_TIMEOUT seconds, default 300), $JOBS of them at once sharing the accelerator
# (JAX's preallocation is off, so each process takes only the memory it uses); each file's last
# lines are printed when it ends, and a failing or timed-out file does not stop the others. The
# failures are listed at the end, and the script then exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WHEELS="${WHEELS:-.wheels}"

python3 - <<'PY'
import jax
print("devices:", jax.devices(), "| jax", jax.__version__, flush=True)
PY

missing=$(python3 - <<'PY'
import importlib.util
need = {"pooch": "pooch", "tqdm": "tqdm", "jaxopt": "jaxopt", "platformdirs": "platformdirs",
        "matfree": "matfree", "filelock": "filelock", "packaging": "packaging",
        "requests": "requests", "urllib3": "urllib3", "idna": "idna", "certifi": "certifi",
        "charset_normalizer": "charset-normalizer"}  # module: distribution
print(" ".join(dist for mod, dist in need.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
  echo "installing from $WHEELS: $missing"
  python3 -m pip install -q --no-index --no-deps --find-links "$WHEELS" $missing
fi

if [ -n "${QUICK:-}" ]; then
  TESTS=(tests/test_objective.py tests/test_parallel.py)
  TABLE=(--dataset random --quick)
  TABLE_JSON="$(mktemp -d)/table_gpu_quick.json"  # a smoke table never replaces the real one
else
  TESTS=(tests/test_*.py)
  TABLE=(--dataset random)
  TABLE_JSON=benchmarks/table_gpu.json
fi
TABLE_FAILED=
echo "== speed table"
if ! timeout 300 python3 -m benchmarks.table "${TABLE[@]}" --out "$TABLE_JSON" 2>&1 \
    | grep -v '^{'; then
  echo "TABLE FAILED OR TIMED OUT"
  TABLE_FAILED=1
fi
if [ -n "${OUT:-}" ]; then cp "$TABLE_JSON" "$OUT/" 2>/dev/null || true; fi

export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several test processes share one accelerator
LOGS=$(mktemp -d)
run_file() {  # one test file to its end; its tail and verdict go to the log, "FAILED" marks it
  local log="$LOGS/$(basename "$1").log"
  local verdict="FAILED OR TIMED OUT"
  timeout "${TEST_TIMEOUT:-300}" python3 -m pytest -q -rfE -p no:cacheprovider "$1" >"$log" 2>&1 \
    && verdict="passed in $SECONDS s"
  (flock 9; echo "== $1 $verdict"; tail -n 20 "$log") 9>"$LOGS/lock"  # one file's lines together
}
export -f run_file; export LOGS
printf '%s\n' "${TESTS[@]}" | xargs -P "${JOBS:-1}" -I{} bash -c 'run_file {}' \
  | tee "$LOGS/summary"
mapfile -t FAILED < <(sed -n 's/^== \(.*\) FAILED OR TIMED OUT$/\1/p' "$LOGS/summary")
if [ -n "$TABLE_FAILED" ]; then FAILED+=("benchmarks.table"); fi

if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "== FAILED: ${FAILED[*]}"
  exit 1
fi
echo "== all passed"
