#!/usr/bin/env bash
# Mutation testing of cmp's core modules (issue 16): slow, so not part of CI.
#
#   tools/mutation.sh                  every mutant not yet tested (results are kept in mutants/)
#   tools/mutation.sh 'plugins.losses*'   these mutants, those not tested yet or whose function changed
#   tools/mutation.sh NAME...          exactly these mutants again, after new tests (module.x_function__mutmut_N)
#
# Needs the `mutation` extra (`pip install -e '.[test,mutation]'`). Which files are mutated
# and which tests run is `[tool.mutmut]` in pyproject.toml. One child process, one thread per
# process (2-core machines are shared). Then rewrites tools/mutation-summary.md, one page: per
# module the mutants, killed, equivalent and not testable (explained by name in
# tools/mutation_equivalent.toml), not explained, the scores, and the diff of each survivor
# not explained.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 CMP_PROGRESS=0

command="tools/mutation.sh"
for arg in "$@"; do command+=" $(printf '%q' "$arg")"; done
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
SECONDS=0
"$PYTHON" -m mutmut run --max-children 1 "$@"
status=$?
"$PYTHON" tools/mutation_summary.py --started "$started" --seconds "$SECONDS" --command "$command"
exit $status
