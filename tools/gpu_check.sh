#!/usr/bin/env bash
# The checks that need a real CUDA GPU, as one prepared device call.
#
#   bash tools/gpu_check.sh prepare     # here, on the CPU (~6 min on 2 cores, needs ../shared/data/kodak):
#                                       # encodes the 72 Kodak streams (24 images, beta 0.1 / 0.5 / 0.9) with
#                                       # the shipped model into gpu/streams and records their numpy and
#                                       # numba CPU decodes in gpu/identity.json
#   bash tools/gpu_check.sh             # there: the device tool's run with carry ["gpu"], timeout_s ~580
#
# On the GPU machine (numba, numba-cuda, numpy, pillow, scipy and torch are there; nothing can be
# installed, so the package runs from the checkout through PYTHONPATH) it runs, each under its own
# timeout, and leaves the logs in $OUT (gpu/out when run by hand):
#   1. the kernels' identity tests with the CUDA backend on the GPU (numpy = numba CPU = CUDA, odd sizes and
#      extreme values; CI runs the same tests on numba's simulator);
#   2. issue 3: the 72 carried streams decoded on CUDA, compared by hash with the numpy and numba CPU
#      decodes recorded here (the very same bytes: the encoder's float arithmetic may differ there);
#   3. issue 8: `python -m refcodec.bench`, whose CUDA lines time decode on numba CUDA against PyTorch CUDA
#      float32 (the 4K picture included).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1

if [ "${1:-}" = prepare ]; then
    set -e
    mkdir -p gpu
    ${PYTHON:-python} -m refcodec.studies.backend_identity --backends numpy,cpu --streams gpu/streams --json gpu/identity.json
    du -sh gpu
    exit 0
fi

out=${OUT:-gpu/out}
mkdir -p "$out"
py=python3
if [ ! -f gpu/identity.json ]; then
    echo "gpu/identity.json is missing: run 'bash tools/gpu_check.sh prepare' here and carry gpu" >&2
    exit 2
fi
{ nvidia-smi -L; $py -c "import numba, numba.cuda as c; print('numba', numba.__version__, 'cuda available', c.is_available())"; } 2>&1 | tee "$out/env.txt"
rc=0
timeout 200 $py -m pytest -q -p no:cacheprovider tests/test_kernels_conv.py tests/test_kernels_ops.py \
    tests/test_kernels_rans.py -k cuda 2>&1 | tee "$out/kernels.txt" || rc=1
cp gpu/identity.json "$out/identity.json"
timeout 200 $py -m refcodec.studies.backend_identity --kodak /nonexistent --streams gpu/streams \
    --backends numpy,cpu,cuda --json "$out/identity.json" 2>&1 | tee "$out/identity.txt" || rc=1
timeout 150 $py -m refcodec.bench --no-cli --repeats 3 2>&1 | tee "$out/bench.txt" || rc=1
exit $rc
