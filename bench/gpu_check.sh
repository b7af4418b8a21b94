#!/usr/bin/env bash
# One end-to-end check of a GPU host for kbflow's production path (README: GPU runbook).
#
#   MODEL_PATH=/models/Qwen3-Embedding-4B [RERANK_MODEL_PATH=/models/Qwen3-Reranker-4B] \
#   [KBFLOW_EMBED__SGLANG_PYTHON=.venv-sglang/bin/python] [PY=.venv-gpu/bin/python] \
#       bench/gpu_check.sh
#
# Prints one line per check, PASS / FAIL / SKIP (with the reason), and exits 1 if any check
# failed. Checks: driver and CUDA, faiss-gpu (the GPU build is the one loaded, and trains an
# IVF index on the GPU), the model folder's tokenizer (end token), SGLang's environment, the
# embedding workers (up, vectors against a sentence-transformers reference computed here, the
# drift guard), the reranker (serve-reranker, /v1/rerank orders a relevant document first), and
# that no worker is left afterwards. Budget: under 8 minutes with a 4B model (model loads
# dominate); each step has its own timeout.
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PY:-$( [ -x .venv-gpu/bin/python ] && echo .venv-gpu/bin/python || echo .venv/bin/python )}"
SGLANG_PY="${KBFLOW_EMBED__SGLANG_PYTHON:-$( [ -x .venv-sglang/bin/python ] && echo "$PWD/.venv-sglang/bin/python" || echo "" )}"
MODEL_PATH="${MODEL_PATH:-}"
RERANK_MODEL_PATH="${RERANK_MODEL_PATH:-}"
STEP_TIMEOUT="${STEP_TIMEOUT:-300}"
failed=0
have_gpu=0

line() {  # line STATUS NAME DETAIL
    printf '%-4s %-10s %s\n' "$1" "$2" "$3"
    [ "$1" = FAIL ] && failed=1
    return 0
}

run_py() {  # run_py NAME CODE: the code prints its one detail line; exit 0 pass, 2 skip, else fail
    local name="$1" code="$2" out rc
    out="$(timeout "$STEP_TIMEOUT" "$PY" -c "$code" 2>/tmp/gpu_check_"$name".log)"
    rc=$?
    case $rc in
        0) line PASS "$name" "$out" ;;
        2) line SKIP "$name" "$out" ;;
        124) line FAIL "$name" "timed out after ${STEP_TIMEOUT}s (log: /tmp/gpu_check_$name.log)" ;;
        *) line FAIL "$name" "${out:-$(tail -1 /tmp/gpu_check_"$name".log)} (log: /tmp/gpu_check_$name.log)" ;;
    esac
}

# 1. driver and CUDA
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    gpu="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
    cuda="$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)"
    line PASS driver "$gpu; CUDA $cuda (driver >= 580 runs SGLang 0.5.23, older gets 0.5.8)"
    have_gpu=1
    gpu_apps() { nvidia-smi --query-compute-apps=pid --format=csv,noheader | sort; }
    before_apps="$(gpu_apps)"
else
    line SKIP driver "no NVIDIA driver (nvidia-smi missing or failing): not a GPU host"
fi

# 2. faiss-gpu: the GPU build is the one loaded, and IVF trains on the GPU like on the CPU
run_py faiss '
import sys, time, numpy as np
try:
    import faiss
except ImportError:
    print("FAISS not installed in this environment: make gpu-venv"); sys.exit(1)
n = faiss.get_num_gpus()
if n == 0:
    print(f"faiss {faiss.__version__} sees no GPU (the CPU build, or no driver): make gpu-venv")
    sys.exit(1 if '"$have_gpu"' else 2)
from kbflow.index.dense import build_dense
rng = np.random.default_rng(0)
x = rng.standard_normal((200_000, 256)).astype("float32")
x /= np.linalg.norm(x, axis=1, keepdims=True)
ids = np.arange(len(x))
t0 = time.perf_counter(); gpu = build_dense(x, ids, "IVF1024,Flat", "gpu"); tg = time.perf_counter() - t0
t0 = time.perf_counter(); cpu = build_dense(x, ids, "IVF1024,Flat", "cpu"); tc = time.perf_counter() - t0
for idx in (gpu, cpu):
    faiss.extract_index_ivf(idx).nprobe = 32
_, a = gpu.search(x[:200], 1); _, b = cpu.search(x[:200], 1)
self_hit = float((a[:, 0] == ids[:200]).mean())
if self_hit < 0.95:
    print(f"GPU-trained IVF finds itself for only {self_hit:.2f} of 200 vectors"); sys.exit(1)
print(f"faiss {faiss.__version__}, {n} GPU(s); IVF1024 on 200k x 256: GPU {tg:.1f}s, CPU {tc:.1f}s, self-hit {self_hit:.2f}")
'

# 3. the model folder: the tokenizer appends its end token; the query prompt comes from the folder
if [ -z "$MODEL_PATH" ]; then
    line SKIP tokenizer "MODEL_PATH not set (the Qwen3-Embedding folder to serve)"
else
    run_py tokenizer '
import sys
from pathlib import Path
from kbflow.embed.model_folder import check_end_token, query_prompt
from kbflow.errors import ConfigError
folder = Path("'"$MODEL_PATH"'")
try:
    end = check_end_token(folder)
except ConfigError as exc:
    print(exc); sys.exit(1)
end = end or "(not a last-token model)"
print(f"{folder.name}: end token {end}; query prompt {query_prompt(folder)!r}")
'
fi

# 4. SGLang's own environment
if [ -z "$SGLANG_PY" ]; then
    line SKIP sglang "no SGLang environment (make sglang-venv, or KBFLOW_EMBED__SGLANG_PYTHON)"
else
    run_py sglang '
import sys
from pathlib import Path
from kbflow.embed.sglang import check_sglang
from kbflow.errors import ConfigError
from kbflow.settings import EmbedSettings
python = Path("'"$SGLANG_PY"'")
try:
    found = check_sglang(EmbedSettings(backend="sglang", sglang_python=python))
    print(f"SGLang {found} in {python}")
except ConfigError as exc:
    print(exc); sys.exit(1)
'
fi

# 5. workers: up, vectors against a reference computed here, the drift guard, gone afterwards
if [ "$have_gpu" = 0 ] || [ -z "$MODEL_PATH" ] || [ -z "$SGLANG_PY" ]; then
    line SKIP workers "needs a GPU, MODEL_PATH and SGLang's environment"
else
    run_py workers '
import os, sys, tempfile, time
from pathlib import Path
from kbflow.embed.drift import check_drift
from kbflow.embed.factory import make_embedder
from kbflow.embed.reference import reference_vectors
from kbflow.embed.sglang import run_workers
from kbflow.errors import KbflowError
from kbflow.settings import EmbedSettings
folder = Path("'"$MODEL_PATH"'")
settings = EmbedSettings(backend="sglang", model=folder.name, model_path=folder,
                         sglang_python=Path("'"$SGLANG_PY"'"), startup_timeout=600)
pid_file = Path(tempfile.mkdtemp()) / "workers.json"
t0 = time.perf_counter()
try:
    with run_workers(settings, pid_file) as urls:
        import json
        pids = [w["pid"] for w in json.loads(pid_file.read_text())["workers"]]
        up = time.perf_counter() - t0
        emb = make_embedder(settings.model_copy(update={"urls": urls}))
        check = check_drift(emb, Path(tempfile.mkdtemp()),
                            reference=lambda t: reference_vectors(settings, t))
        again = check_drift(emb, Path(tempfile.mkdtemp()))
except KbflowError as exc:
    print(exc); sys.exit(1)
left = [p for p in pids if Path(f"/proc/{p}").exists()]
if left:
    print(f"workers still running after stop: {left}"); sys.exit(1)
print(f"up in {up:.0f}s, {emb.info.full_dim} dims; first-use canaries vs {check.reference}: "
      f"min cosine {check.min_cosine_reference}; single vs batch {check.min_cosine_single:.5f}; stopped")
'
fi

# 6. the reranker: serve-reranker, then /v1/rerank puts the relevant document first
if [ "$have_gpu" = 0 ] || [ -z "$RERANK_MODEL_PATH" ] || [ -z "$SGLANG_PY" ]; then
    line SKIP rerank "needs a GPU, RERANK_MODEL_PATH and SGLang's environment"
else
    run_py rerank '
import json, os, signal, subprocess, sys, time, urllib.request
from kbflow.embed.sglang import free_port
port = free_port()
cmd = [sys.executable, "-m", "kbflow.cli", "serve-reranker", "--model-path", "'"$RERANK_MODEL_PATH"'",
       "--port", str(port), "--python", "'"$SGLANG_PY"'"]
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
try:
    deadline = time.monotonic() + 600
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            print("reranker did not become healthy"); sys.exit(1)
        time.sleep(3)
    body = {"query": "我的快递怎么还没到", "documents": [
        "优惠券过期后不能使用", "订单物流信息一直没有更新怎么办", "如何修改收货地址"]}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/rerank", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    out = json.loads(urllib.request.urlopen(req, timeout=60).read())
    items = out if isinstance(out, list) else out.get("results", out.get("data", []))
    best = max(items, key=lambda r: r["score"])
    if best["index"] != 1:
        print(f"the relevant document is not first: {items}"); sys.exit(1)
    score = best["score"]
    print(f"relevant document first (score {score:.3f})")
finally:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
'
fi

# 7. nothing of ours left on the GPUs
if [ "$have_gpu" = 1 ]; then
    new_apps="$(comm -13 <(echo "$before_apps") <(gpu_apps) | tr '\n' ' ')"
    if [ -z "${new_apps// /}" ]; then line PASS gone "no process this check started holds GPU memory"
    else line FAIL gone "processes started during the check still hold GPU memory: $new_apps"; fi
else
    line SKIP gone "no GPU"
fi

exit $failed
