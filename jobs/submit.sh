#!/usr/bin/env bash
# Submit a fit to a running Ray cluster and follow its logs until it ends:
#
#   RAY_ADDRESS=http://127.0.0.1:8265 jobs/submit.sh configs/quickstart.yaml \
#       data.path=/mnt/shared/data/photo.zarr run.dir=/mnt/shared/runs/photo train.workers=4
#
# RAY_ADDRESS is the cluster's dashboard (job server) address; `ray dashboard jobs/cluster.yaml`
# forwards it to 127.0.0.1:8265. A cluster started with token authentication also needs
# RAY_AUTH_MODE=token here and its token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN.
# Extra `ray job submit` options go in RAY_SUBMIT_OPTS (e.g. "--no-wait --submission-id photo-1").
# The exit status is that of the job: 0 when it succeeded.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: jobs/submit.sh CONFIG [key=value ...]" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
export RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
# shellcheck disable=SC2086  # RAY_SUBMIT_OPTS is a list of options, split on purpose
exec ray job submit --address "$RAY_ADDRESS" --working-dir . --runtime-env jobs/runtime_env.yaml \
    ${RAY_SUBMIT_OPTS:-} -- python -m nint_dist.launch "$@"
