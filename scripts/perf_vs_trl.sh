#!/usr/bin/env bash
# The suite's `ddpo` against TRL 0.23.1's DDPOTrainer (the last TRL release that has it) at identical work, timed
# in one process: makes .venv-trl beside the project's .venv (trl installed without dependencies; every other
# package is the project's own, seen through a .pth file), then runs scripts/perf_vs_trl.py in it.
# Usage: make setup && scripts/perf_vs_trl.sh [--rounds N] [--out results/perf]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3.11}
if [ ! -x .venv-trl/bin/python ]; then
  $PY -m venv .venv-trl
  site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  trl_site=$(.venv-trl/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  # addsitedir also runs the project venv's own .pth files (the editable install of dpok-bench among them)
  echo "import site; site.addsitedir('$site')" > "$trl_site/dpok-bench-venv.pth"
  .venv-trl/bin/pip install --quiet --no-deps trl==0.23.1
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv-trl/bin/python scripts/perf_vs_trl.py "$@"
