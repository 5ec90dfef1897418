#!/usr/bin/env bash
# `bench perf --sd15` on a GPU machine that has PyTorch but not the rest of this project's stack, and no network
# (a rented or lent machine with a stock PyTorch image). Two verbs:
#
#   scripts/gpu_perf.sh fetch [PYVER]   here, after `make setup`: download into .whl/ the wheels of the packages the
#                                       target lacks, at the versions this .venv runs (PYVER: the target's Python,
#                                       default 3.12; a few are built per Python version, so fetch for the target's)
#   scripts/gpu_perf.sh run [ARGS]      there, from the project's root with .whl/ beside it: install the wheels and
#                                       the project (no dependencies) into $SITE (default /tmp/site), check that the
#                                       stack imports, then `bench perf --sd15 --device cuda --out $OUT ARGS`
#                                       ($OUT default results/perf; --device cpu in ARGS runs the CPU cell instead;
#                                       DPOK_BENCH_COMMIT names the commit where the checkout has no .git)
#
# CARRY is the model stack this project is tested with (diffusers, transformers, tokenizers, huggingface-hub, peft,
# accelerate) plus those of their requirements that a stock PyTorch image did not have when last checked
# (2026-12-07: Python 3.12, torch 2.11, no diffusers). Versions are read from .venv, so the GPU run uses the same
# library versions as `make test`; only torch and the packages the image already has differ. If `run` stops at its
# import check, add the missing name to CARRY and fetch again.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=(diffusers transformers tokenizers huggingface-hub peft accelerate safetensors
       importlib-metadata kernels httpx2 httpcore2 lazy-importer tomlkit truststore)
WHL=${WHL:-.whl}

case "${1:-}" in
fetch)
  pyver=${2:-3.12}
  [ -x .venv/bin/python ] || { echo "gpu_perf.sh fetch: no .venv here; run 'make setup' first" >&2; exit 2; }
  mkdir -p "$WHL"
  pins=()
  for name in "${CARRY[@]}"; do
    version=$(.venv/bin/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") \
      || { echo "gpu_perf.sh fetch: $name is not installed in .venv" >&2; exit 2; }
    pins+=("$name==$version")
  done
  plats=()
  for p in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 \
           manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    plats+=(--platform "${p}_x86_64")
  done
  .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: --python-version "$pyver" \
    --implementation cp "${plats[@]}" -d "$WHL" "${pins[@]}"
  echo "gpu_perf.sh fetch: $(ls "$WHL"/*.whl | wc -l) wheels, $(du -sh "$WHL" | cut -f1) in $WHL/ for Python $pyver"
  ;;
run)
  shift
  site=${SITE:-/tmp/site}
  out=${OUT:-results/perf}
  py=${PYTHON:-python3}
  ls "$WHL"/*.whl >/dev/null 2>&1 || { echo "gpu_perf.sh run: no wheels in $WHL/; run 'fetch' first" >&2; exit 2; }
  "$py" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$WHL"/*.whl
  # the project itself, installed (not run from this folder: its package-dir map needs an install), entry points too
  "$py" -m pip install --quiet --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$site" .
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"  # and python -P below: this folder's bench/ is not the package
  # env.json's commit: from git where the checkout has its .git, else what the caller set
  DPOK_BENCH_COMMIT=$(git rev-parse HEAD 2>/dev/null || echo "${DPOK_BENCH_COMMIT:-}")
  export DPOK_BENCH_COMMIT
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
  "$py" -P - <<'EOF'
import importlib.metadata as m
import torch
import bench.cli, bench.registry, diffusers, peft, transformers  # noqa: F401  (fails here if a package is missing)
names = ("dpok-bench", "torch", "diffusers", "transformers", "peft", "accelerate", "huggingface-hub", "numpy")
print("gpu_perf.sh run:", ", ".join(f"{n} {m.version(n)}" for n in names))
print("gpu_perf.sh run: cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF
  mkdir -p "$out"
  device=(--device cuda)
  case " $* " in *" --device "*) device=() ;; esac
  exec "$py" -P -c "from bench.cli import main; main()" perf --sd15 "${device[@]}" --out "$out" "$@"
  ;;
*)
  echo "usage: scripts/gpu_perf.sh fetch [PYVER] | run [bench perf args]" >&2
  exit 2
  ;;
esac
