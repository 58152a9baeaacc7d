# Source at the start of a device call: installs carried wheels (.whl/) and records the environment.
# Usage on the GPU machine:  source suite/gpu_env.sh
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
mkdir -p "${OUT:-/tmp/out}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'triton', triton.__version__)"
  python3 -c "import transformers; print('transformers', transformers.__version__)" 2>&1 | tail -1
  echo "commit ${FLASH_REPRO_COMMIT:-unknown}"; } > "${OUT:-/tmp/out}/env.txt" 2>&1
cat "${OUT:-/tmp/out}/env.txt"
