#!/bin/sh
# The image's entrypoint (under tini): the first argument names the role, the rest is passed on.
#   controller   ablate serve on $ABLATE_HOST:$ABLATE_PORT, using the Ray cluster at
#                $ABLATE_RAY_ADDRESS and the MLflow server at $ABLATE_MLFLOW_TRACKING_URI
#                (it starts neither); the store is $ABLATE_DB_URL
#   ray-head     ray start --head: GCS on $RAY_GCS_PORT, dashboard on $ABLATE_RAY_DASHBOARD_PORT
#   ray-worker   ray start --address=$RAY_HEAD_ADDRESS
#   mlflow       mlflow server on :$MLFLOW_PORT, backend store $MLFLOW_BACKEND_STORE_URI, artifacts
#                proxied to $MLFLOW_ARTIFACTS_DESTINATION
#   other        run as given
# Ray nodes take RAY_NUM_CPUS / RAY_NUM_GPUS (unset: what the container has). With
# RAY_AUTH_MODE=token, Ray reads RAY_AUTH_TOKEN itself; the controller wants the token in a file
# (ABLATE_RAY_AUTH_TOKEN_FILE), so this script writes it to a 0600 file in $HOME and drops the
# variable before the controller starts.
set -eu

role=${1:-controller}
[ "$#" -gt 0 ] && shift
# The role, for ablate-healthcheck (a HEALTHCHECK sees the image's environment, not this one's).
printf '%s\n' "$role" > /tmp/ablate-role 2>/dev/null || true

ray_resources() {
  if [ -n "${RAY_NUM_CPUS:-}" ]; then set -- "$@" "--num-cpus=$RAY_NUM_CPUS"; fi
  if [ -n "${RAY_NUM_GPUS:-}" ]; then set -- "$@" "--num-gpus=$RAY_NUM_GPUS"; fi
  printf '%s\n' "$@"
}

case "$role" in
  controller)
    if [ -n "${RAY_AUTH_TOKEN:-}" ] && [ -z "${ABLATE_RAY_AUTH_TOKEN_FILE:-}" ]; then
      token_file="$HOME/.ray-auth-token"
      (umask 077 && printf '%s' "$RAY_AUTH_TOKEN" > "$token_file")
      export ABLATE_RAY_AUTH_TOKEN_FILE="$token_file"
    fi
    unset RAY_AUTH_TOKEN
    exec ablate serve --no-start-ray --no-start-mlflow "$@"
    ;;
  ray-head)
    # shellcheck disable=SC2046  # one option per line, none with spaces
    exec ray start --head --block --disable-usage-stats \
      --port="${RAY_GCS_PORT:-6379}" \
      --include-dashboard=true --dashboard-host=0.0.0.0 \
      --dashboard-port="${ABLATE_RAY_DASHBOARD_PORT:-8265}" \
      $(ray_resources) "$@"
    ;;
  ray-worker)
    # shellcheck disable=SC2046
    exec ray start --block --disable-usage-stats \
      --address="${RAY_HEAD_ADDRESS:-ray-head:6379}" \
      $(ray_resources) "$@"
    ;;
  mlflow)
    : "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (a PostgreSQL URL)}"
    # MLFLOW_BACKEND_STORE_URI and MLFLOW_SERVER_ALLOWED_HOSTS are read by mlflow itself: the
    # database password stays out of the command line. No job runner: this service has no use
    # for MLflow's GenAI jobs.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION
    exec mlflow server --host 0.0.0.0 --port "${MLFLOW_PORT:-5000}" \
      --workers "${MLFLOW_WORKERS:-2}" \
      --serve-artifacts \
      --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}" "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
