#!/usr/bin/env bash
# One device-tool call: capture 720p / 1080p / 4K case sets on the GPU with the stand-in model, replay
# reference vs triton side by side, and leave results + logs under $OUT. Run from the repo root with the
# wheels in .whl (pycocotools, av, tqdm: not in the device image), e.g.
#   run(command="RLEBENCH_COMMIT=<sha> RLEBENCH_DIRTY=0 bash scripts/gpu_bench.sh", carry=[".whl"])
# (the copy on the device has no .git: RLEBENCH_COMMIT names the commit in the results)
set -euo pipefail
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The copy is not pip-installed: build the triton implementation's host steps in C here (without them the same
# steps run in Python, 10-16 us slower per call; the results' settings say which ran).
python3 scripts/build_host.py
bench() { python3 -m rlebench "$@"; }
REPEATS="${REPEATS:-5}"
SETS="${SETS:-720p 1080p 4k}"

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"

declare -A SIZE=([720p]=720x1280 [1080p]=1080x1920 [4k]=2160x3840)
declare -A COUNT=([720p]=60 [1080p]=60 [4k]=30)
dirs=()
sets=()
for name in $SETS; do
  video="/tmp/videos/sample_${name}.mp4"
  bench make-video --size "${SIZE[$name]}" --frames 240 --output "$video" >/dev/null
  start=$(date +%s.%N)
  bench capture --video_reference "$video" --cases-dir "cases/gpu-$name" --capture-count "${COUNT[$name]}" \
    --device cuda --overwrite --every 4 2>&1 | tail -n 3 | tee -a "$OUT/capture.log"
  end=$(date +%s.%N)
  echo "capture $name: ${COUNT[$name]} cases in $(python3 -c "print(round($end - $start, 1))") s" | tee -a "$OUT/capture.log"
  bench info "cases/gpu-$name" | head -n 20 >> "$OUT/capture.log"
  dirs+=(--cases-dir "cases/gpu-$name")
  sets+=("cases/gpu-$name")
done

# CPUS=5 pins the replay (--cpu-affinity): on the lent virtual machine unpinned runs of one code spread by 17-59 us.
pin=()
if [ -n "${CPUS:-}" ]; then pin=(--cpu-affinity "$CPUS"); fi
bench replay "${dirs[@]}" --impl "${IMPLS:-reference,triton}" --repeats "$REPEATS" --warmup-repeats 1 --device cuda \
  --results-dir /tmp/results --label "${LABEL:-reference-vs-triton}" --no-progress ${pin[@]+"${pin[@]}"} 2>&1 | tee "$OUT/replay.log"
cp /tmp/results/*/*.json /tmp/results/*/*.md "$OUT"/ 2>/dev/null || true

# Kernel-level view of the same captured sets: identity per case, enqueue/finish split, per-kernel device time
# (torch.profiler), registers/spills; then the synthetic configurations (denser scenes, fp16, B=2, 4K masks).
if [ "${TRITON_CHECK:-1}" = 1 ]; then
  python3 scripts/gpu_triton_check.py --cases "${sets[@]}" --profile-all 2>&1 | tee "$OUT/triton_check.log"
  python3 scripts/gpu_triton_check.py 2>&1 | tee -a "$OUT/triton_check.log"
fi
