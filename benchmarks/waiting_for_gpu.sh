#!/usr/bin/env bash
# The GPU-only tests and the GPU measurements of BENCHMARKS.md, in parts that each fit a 10-minute
# call on a lent H100 (run from the repository root):
#
#   bash benchmarks/waiting_for_gpu.sh 1    # GPU-only tests, then LIF + training step vs spikingjelly
#   bash benchmarks/waiting_for_gpu.sh 2    # SAM ViT-B attention maps (fp32 b1, bf16 b8)
#   bash benchmarks/waiting_for_gpu.sh 3    # SAM ViT-B extraction at 1024 px, banded ridge
#
# Logs and JSON go to $OUT (default ./gpu-out). If a .whl9/ folder of wheels is present (the
# packages the device image lacks), they are installed into /tmp/site first, offline.
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if [ -d .whl9 ] && ! python3 -c "import zarr, himalaya, spikingjelly" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl9/*.whl 2>&1 | tail -2
  export PYTHONPATH=/tmp/site:src
fi
export PYTHONPATH=${PYTHONPATH:-src} HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/env.txt" 2>&1
python3 -c "import sys, torch, timm, triton; print(sys.version, torch.__version__, timm.__version__, triton.__version__)" >> "$OUT/env.txt" 2>&1

run() {  # run NAME SECONDS CMD...: log to $OUT/NAME.txt and print its tail
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  echo "   exit $?"
  tail -n 25 "$OUT/$name.txt"
}

case "${1:-1}" in
  1)
    # only the files with GPU tests: the device image may lack packages other test modules import
    run gpu_tests 200 python3 -m pytest -m gpu -q -p no:cacheprovider -rfEs $(grep -rl "mark.gpu" tests)
    run triton_compile 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_triton_compile.py
    run spiking_tiny 150 python3 benchmarks/bench_spiking.py --device cuda --repeats 50 --json "$OUT/spiking.json"
    run spiking_384 150 python3 benchmarks/bench_spiking.py --device cuda --model hst_4_384 --batch 64 --repeats 20 --json "$OUT/spiking_384.json"
    ;;
  2)
    run attention_fp32_b1 270 python3 benchmarks/bench_attention.py --device cuda --batch 1 --reps 5 --json "$OUT/attention_b1.json"
    run attention_bf16_b8 270 python3 benchmarks/bench_attention.py --device cuda --batch 8 --reps 5 --bf16 --json "$OUT/attention_b8.json"
    ;;
  3)
    run extraction_sam 300 python3 benchmarks/bench_extraction.py --device cuda --model sam_vit_b --n-images 256 --batch-size 8 --repeats 2 --precision bf16 --modes ours,plain_device,gpu_forward,naive --json "$OUT/extraction_sam.json"
    run banded 240 python3 benchmarks/run_all.py --only banded --out "$OUT/banded"
    ;;
  *) echo "usage: $0 1|2|3" >&2; exit 2 ;;
esac
