#!/usr/bin/env bash
# geoseg on one NVIDIA GPU, in under 8 minutes: U-Net ResNet-34 at 512² tiles, model-only vs whole
# `geoseg run` throughput with torch AMP (bf16) and with ONNX Runtime's CUDA provider, GPU utilisation
# (nvidia-smi, every 200 ms) during each whole run, and `pytest tests/predict/test_gpu.py`.
# Writes ONE JSON: $OUT/gpu.json when $OUT is set, else ./gpu.json. The measurements are in
# benchmarks/gpu_check.py (its docstring says what each figure is).
#
#   bash benchmarks/gpu.sh [gpu_check.py options, e.g. --size 8192 --model trained.pt]
#   bash benchmarks/gpu.sh --dry-run                 # tiny, on the CPU: checks this script anywhere
#   bash benchmarks/gpu.sh --fetch-wheels [DIR [NAME...]]   # on a machine with PyPI: fill DIR (.whl)
#
# What it expects (run from the repository root; nothing is fetched from the network):
# - python3 >= 3.11 ($PYTHON to choose another) with a CUDA build of torch and torchvision, and
#   nvidia-smi on the PATH (without it, utilisation is not sampled and the JSON says so);
# - geoseg's other dependencies importable, or their wheels in ./.whl (or $GEOSEG_WHEELS): the wheels are
#   installed with `pip install --no-index --no-deps --target /tmp/geoseg-site`, nothing else. A CUDA
#   PyTorch image typically lacks rasterio, pyogrio, geopandas, pyproj, shapely, dask, distributed, zarr,
#   segmentation-models-pytorch, connected-components-3d, pydantic and their small dependencies:
#   `--fetch-wheels` downloads exactly those for $GEOSEG_PYVER (default 3.12) on manylinux x86-64;
#   if pip has an index after all, `pip install -e .` is tried last;
# - geoseg itself is imported from this checkout (PYTHONPATH), so it needs no installation;
# - onnxruntime-gpu for the ONNX Runtime part: used when the installed onnxruntime has a CUDA provider,
#   else installed from an onnxruntime_gpu-*.whl in the wheels folder (or from an index, if pip can reach
#   one) into /tmp/geoseg-ort, ahead of the CPU package; its CUDA provider also needs the CUDA and cuDNN
#   major versions it was built for (pip's nvidia-* packages in either folder are put on
#   LD_LIBRARY_PATH). Where it cannot start, that part is skipped and the JSON says why.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=${PYTHON:-python3}
WHEELS=${GEOSEG_WHEELS:-$ROOT/.whl}
SITE=/tmp/geoseg-site
ORT_SITE=/tmp/geoseg-ort
DEST=${OUT:-$ROOT}
JSON=$DEST/gpu.json
NOTES=$(mktemp /tmp/geoseg-gpu-setup.XXXXXX)
notes=()
note() { echo "gpu.sh: $*" >&2; notes+=("$*"); }

# Wheels a CUDA PyTorch image lacks (pure-Python ones resolve to py3-none-any).
MISSING_WHEELS="rasterio affine cligj click-plugins pyproj shapely geopandas pyogrio dask distributed \
partd locket tblib zict tornado zarr numcodecs donfig google-crc32c importlib-metadata connected-components-3d \
segmentation-models-pytorch pydantic pydantic-core annotated-types typing-inspection platformdirs"

if [[ ${1:-} == --fetch-wheels ]]; then
    dir=${2:-$ROOT/.whl}
    shift $(($# < 2 ? $# : 2))
    names=${*:-$MISSING_WHEELS}
    pyver=${GEOSEG_PYVER:-3.12}
    # shellcheck disable=SC2086  # names is a list
    exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" $names
fi

dry=0
for arg in "$@"; do [[ $arg == --dry-run ]] && dry=1; done

fail() { # write the one JSON with what happened, then stop
    note "$*"
    "$PY" - "$JSON" "${notes[@]}" <<'EOF'
import json, sys
json.dump({"setup": sys.argv[2:], "error": sys.argv[-1]}, open(sys.argv[1], "w"), indent=1)
EOF
    echo "gpu.sh: wrote $JSON" >&2
    exit 1
}

mkdir -p "$DEST"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || fail "geoseg needs Python 3.11 or newer; $PY is $("$PY" -V 2>&1)"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

missing() { # the distributions geoseg (and the GPU tests) need that do not import
    "$PY" - <<'EOF'
import importlib.util
mods = {"numpy": "numpy", "scipy": "scipy", "cc3d": "connected-components-3d", "rasterio": "rasterio",
        "affine": "affine", "pyproj": "pyproj", "shapely": "shapely", "geopandas": "geopandas",
        "pyogrio": "pyogrio", "dask": "dask", "distributed": "distributed", "zarr": "zarr", "torch": "torch",
        "torchvision": "torchvision", "segmentation_models_pytorch": "segmentation-models-pytorch",
        "safetensors": "safetensors", "onnxruntime": "onnxruntime", "onnx": "onnx", "onnxscript": "onnxscript",
        "PIL": "pillow", "click": "click", "rich": "rich", "pydantic": "pydantic", "yaml": "pyyaml",
        "psutil": "psutil", "platformdirs": "platformdirs", "filelock": "filelock", "matplotlib": "matplotlib",
        "pytest": "pytest"}
print(" ".join(d for m, d in mods.items() if importlib.util.find_spec(m) is None))
EOF
}

need=$(missing)
if [[ -n $need ]] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    whls=("$WHEELS"/*.whl)
    note "installing ${#whls[@]} wheels from $WHEELS into $SITE (missing: $need)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
        || note "pip could not install the wheels in $WHEELS"
    export PYTHONPATH=$ROOT:$SITE${PYTHONPATH#"$ROOT"}
    need=$(missing)
fi
if [[ -n $need ]]; then
    note "trying pip install -e . (missing: $need)"
    timeout 180 "$PY" -m pip install -q -e . >&2 || note "pip install -e . failed (no index reachable?)"
    need=$(missing)
fi
[[ -z $need ]] || fail "missing Python packages: $need; put their wheels in $WHEELS (bash benchmarks/gpu.sh --fetch-wheels on a machine with PyPI)"
"$PY" -c 'import geoseg, sys; sys.exit(not geoseg.__file__.startswith(sys.argv[1]))' "$ROOT" \
    || fail "geoseg does not import from $ROOT"

has_cuda_ep() { "$PY" -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null; }
if ((!dry)) && ! has_cuda_ep; then
    ort_whls=("$WHEELS"/onnxruntime_gpu-*.whl)
    ort_whl=${ort_whls[0]}
    if [[ -f $ort_whl ]]; then
        note "installing $(basename "$ort_whl") into $ORT_SITE"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$ORT_SITE" "$ort_whl" \
            || note "pip could not install $ort_whl"
    else
        note "no onnxruntime-gpu wheel in $WHEELS; trying pip install onnxruntime-gpu"
        timeout 180 "$PY" -m pip install -q --no-deps --no-cache-dir --target "$ORT_SITE" onnxruntime-gpu >&2 \
            || note "pip could not install onnxruntime-gpu (no index reachable?)"
    fi
    [[ -d $ORT_SITE/onnxruntime ]] && export PYTHONPATH=$ORT_SITE:$PYTHONPATH
    has_cuda_ep || note "ONNX Runtime has no CUDA provider here: the ONNX Runtime part is skipped"
fi

# CUDA/cuDNN libraries from pip's nvidia-* packages, for ONNX Runtime's CUDA provider
libs=$("$PY" - "$SITE" "$ORT_SITE" <<'EOF'
import glob, os, site, sys
roots = sys.argv[1:] + site.getsitepackages()
print(":".join(d for r in roots for d in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib"))) if os.path.isdir(d)))
EOF
)
[[ -n $libs ]] && export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

"$PY" - "$NOTES" "${notes[@]}" <<'EOF'
import json, sys
json.dump(sys.argv[2:], open(sys.argv[1], "w"))
EOF
export PYTHONUNBUFFERED=1
timeout 450 "$PY" benchmarks/gpu_check.py --out "$JSON" --setup "$NOTES" "$@"
rc=$?
rm -f "$NOTES"
if ((rc)); then
    [[ -s $JSON ]] || fail "benchmarks/gpu_check.py ended with exit $rc before writing anything"
    "$PY" - "$JSON" "$rc" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d.setdefault("error", f"benchmarks/gpu_check.py ended with exit {sys.argv[2]} (124: stopped after 450 s); what it wrote stands")
json.dump(d, open(sys.argv[1], "w"), indent=1)
EOF
fi
exit $rc
