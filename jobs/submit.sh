#!/usr/bin/env bash
# Submit a fit to a running Ray cluster and follow its logs until it ends:
#
#   RAY_ADDRESS=http://127.0.0.1:8265 jobs/submit.sh configs/quickstart.yaml \
#       data.path=/mnt/shared/data/photo.zarr run.dir=/mnt/shared/runs/photo train.workers=4
#
# RAY_ADDRESS is the cluster's dashboard (job server) address; `ray dashboard jobs/cluster.yaml`
# forwards it to 127.0.0.1:8265. A cluster started with token authentication also needs
# RAY_AUTH_MODE=token here and its token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN.
# Extra `ray job submit` options go in RAY_SUBMIT_OPTS (e.g. "--no-wait").
# The exit status is the job's own: 0 when it succeeded, 2 for a mistake in the command (one
# `error:` line in the log), 1 when training failed; 2 also when the cluster cannot be reached or
# refuses the client, with one line saying why.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: jobs/submit.sh CONFIG [key=value ...]" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
export RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
if ! command -v ray >/dev/null 2>&1; then
    echo "error: the ray command is not on PATH; activate the environment (source .venv/bin/activate)" >&2
    exit 2
fi
python="$(dirname "$(command -v ray)")/python"  # the Python that Ray's command runs on

# One line instead of a traceback when the job server cannot be used.
"$python" - "$RAY_ADDRESS" <<'PY'
import os
import sys

from ray.job_submission import JobSubmissionClient

address = sys.argv[1]
try:
    JobSubmissionClient(address)
except Exception as e:  # Ray raises several types; the message tells them apart
    text = str(e)
    if "authentication" in text.lower() or "401" in text:
        if os.environ.get("RAY_AUTH_MODE") != "token":
            why = "it uses token authentication: set RAY_AUTH_MODE=token (the token in ~/.ray/auth_token,"
            why += " RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)"
        else:
            why = "the token given (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN) is not the cluster's"
        print(f"error: the Ray cluster at {address} refused this client: {why}", file=sys.stderr)
    else:
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        print(f"error: cannot reach the Ray job server at {address} ({first}); start the cluster or fix"
              " RAY_ADDRESS", file=sys.stderr)
    sys.exit(2)
PY

# shellcheck disable=SC2086  # RAY_SUBMIT_OPTS is a list of options, split on purpose
if [[ " ${RAY_SUBMIT_OPTS:-} " == *" --no-wait "* ]]; then
    exec ray job submit --address "$RAY_ADDRESS" --working-dir . --runtime-env jobs/runtime_env.yaml \
        ${RAY_SUBMIT_OPTS:-} -- python -m nint_dist.launch "$@"
fi

id="nint-$(date +%Y%m%d-%H%M%S)-$RANDOM"
status=0
# shellcheck disable=SC2086
ray job submit --address "$RAY_ADDRESS" --submission-id "$id" --working-dir . \
    --runtime-env jobs/runtime_env.yaml ${RAY_SUBMIT_OPTS:-} -- python -m nint_dist.launch "$@" || status=$?
if [[ $status -ne 0 ]]; then
    # `ray job submit` exits 1 for every failed job: exit with the driver's own status instead.
    code=$("$python" -c '
import sys
from ray.job_submission import JobSubmissionClient
info = JobSubmissionClient(sys.argv[1]).get_job_info(sys.argv[2])
print(info.driver_exit_code if info.driver_exit_code is not None else "")
' "$RAY_ADDRESS" "$id" 2>/dev/null || true)
    if [[ -n "$code" && "$code" != 0 ]]; then
        exit "$code"
    fi
    exit "$status"
fi
