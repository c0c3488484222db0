#!/usr/bin/env bash
# GPU check: every test file and the speed table, on a GPU host with no network.
#
# The host needs what a JAX GPU machine typically has: python3 with jax[cuda], flax, optax,
# scipy, matplotlib and pytest. The package's other pure-Python dependencies travel as wheels
# in .wheels/ (made on a networked machine, from the repository root, by
#     pip download --only-binary :all: --no-deps -d .wheels \
#         pooch tqdm jaxopt platformdirs packaging requests urllib3 idna certifi charset-normalizer
# ) and are installed with --no-deps, only when missing, so the host's jax[cuda] is never
# replaced. Run from the repository root:
#     bash benchmarks/gpu_check.sh            # every file of tests/, then the speed table
#     QUICK=1 bash benchmarks/gpu_check.sh    # smoke run anywhere (small table, two test files)
# Each test file runs to its end in its own pytest process (at most $TEST_TIMEOUT seconds,
# default 300); a failing or timed-out file does not stop the others or the table. The failures
# are listed at the end, and the script then exits 1. The speed table is printed last; its JSON
# lands in benchmarks/table_gpu.json (and $OUT/ when $OUT is set).
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
        "packaging": "packaging", "requests": "requests", "urllib3": "urllib3", "idna": "idna",
        "certifi": "certifi", "charset_normalizer": "charset-normalizer"}
print(" ".join(dist for mod, dist in need.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
  echo "installing from $WHEELS: $missing"
  python3 -m pip install -q --no-index --no-deps --find-links "$WHEELS" $missing
fi

if [ -n "${QUICK:-}" ]; then
  TESTS=(tests/test_objective.py tests/test_parallel.py)
  TABLE=(--data random --quick)
else
  TESTS=(tests/test_*.py)
  TABLE=(--data random)
fi
FAILED=()
for test in "${TESTS[@]}"; do
  echo "== $test"
  if ! timeout "${TEST_TIMEOUT:-300}" python3 -m pytest -q -rfE -p no:cacheprovider "$test" 2>&1 \
      | tail -n 20; then
    echo "FAILED OR TIMED OUT: $test"
    FAILED+=("$test")
  fi
done

echo "== speed table"
if ! timeout 300 python3 -m benchmarks.table "${TABLE[@]}" --out benchmarks/table_gpu.json 2>&1 \
    | grep -v '^{'; then
  echo "TABLE FAILED OR TIMED OUT"
  FAILED+=("benchmarks.table")
fi
if [ -n "${OUT:-}" ]; then cp benchmarks/table_gpu.json "$OUT/" 2>/dev/null || true; fi

if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "== FAILED: ${FAILED[*]}"
  exit 1
fi
echo "== all passed"
