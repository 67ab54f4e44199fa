#!/usr/bin/env bash
# Keeps pyproject.toml's floors true: installs sdtui with the lowest versions it allows for each
# direct dependency (uv's --resolution lowest-direct), then makes a demo image with the installed
# `sdtui generate` and runs the engine, job queue, CLI and app tests on those versions.
# torch stays at the tested release (CI has no GPU, and older torch builds for this platform are
# multi-GB CUDA downloads); every other direct dependency is at its floor.
# Run from anywhere: bash tests/lowest_versions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/tools"
"$work/tools/bin/pip" install -q "uv==0.13.9"
python3 -m venv "$work/env"
"$work/env/bin/pip" install -q torch==2.13.0
echo "torch==2.13.0" > "$work/torch.txt"
"$work/tools/bin/uv" pip install -q --python "$work/env/bin/python" --resolution lowest-direct \
    --override "$work/torch.txt" --reinstall-package filelock -e ".[test]"

echo "lowest allowed versions of the direct dependencies:"
"$work/tools/bin/uv" pip list --python "$work/env/bin/python" 2>/dev/null \
    | grep -Ei '^(textual|rich-pixels|numpy|diffusers|transformers|torch|accelerate|safetensors|huggingface.hub|pillow|filelock|platformdirs|psutil|scipy|peft|dynamicprompts|pytest|pytest-asyncio|pytest-textual-snapshot) ' \
    | sed 's/^/  /'

home="$work/home"
SDTUI_HOME="$home" HF_HUB_OFFLINE=1 "$work/env/bin/sdtui" generate "a red fox" --demo --seed 7 --steps 4 \
    --width 64 --height 64 --output "$work/fox.png"
test -s "$work/fox.png"
SDTUI_HOME="$home" "$work/env/bin/sdtui" stop  # the server that generate started, before its venv goes
"$work/env/bin/python" -m pytest -q -p no:cacheprovider tests/engine/test_engine.py tests/server/test_generation_service.py \
    tests/cli/test_cli.py tests/client/test_app.py tests/engine/test_models.py tests/engine/test_model_management.py tests/client/test_viewer.py \
    tests/engine/test_parts.py tests/engine/test_conditioning.py tests/engine/test_networks.py
