#!/usr/bin/env bash
# Entry point of the uhr_seg_ros images: ROS environment, TensorRT engines on first start, then
# `ros2 launch uhr_seg_ros seg.launch.py`. Arguments are extra launch arguments (name:=value).
#
# Environment (set by docker/compose.yaml, all optional):
#   UHR_SEG_PRESET      parameter preset from the package's config/: jetson_orin, desktop,
#                       cpu_bench or seg (default seg)
#   UHR_SEG_MODEL       checkpoint to serve (default: the bundled model)
#   UHR_SEG_PREBUILD    1 (default): build missing TensorRT engines before launch; 0: leave it to
#                       the node
# Any other first argument (bash, ros2, python3 ...) runs that command in the same environment,
# e.g. `docker compose run --rm seg-jetson ros2 topic echo /uhr_seg/stats`.
set -eo pipefail

# The workspace's setup script also sources the ROS distro it was built on (colcon chains
# prefixes). Setup scripts read unset variables, so nounset comes after.
# shellcheck source=/dev/null
source "${UHR_SEG_WS}/install/setup.bash"
set -u

log() { echo "[uhr-seg-entrypoint] $*" >&2; }

share="${UHR_SEG_WS}/install/share/uhr_seg_ros"

# Every process in the container (the launch, `ros2 bag record`, `ros2 topic echo`) uses the
# shared-memory profile for large images, as seg.launch.py does: a profile the user chose under
# either name wins. Fast DDS 3.x (Jazzy) reads the first name, 2.x (Humble) the second.
profile="${share}/config/fastdds_large_images.xml"
profile="${FASTRTPS_DEFAULT_PROFILES_FILE:-${profile}}"
profile="${FASTDDS_DEFAULT_PROFILES_FILE:-${profile}}"
export FASTDDS_DEFAULT_PROFILES_FILE="${profile}" FASTRTPS_DEFAULT_PROFILES_FILE="${profile}"

if [[ $# -gt 0 && $1 != *:=* ]]; then
    exec "$@"
fi

preset="${UHR_SEG_PRESET:-seg}"
params_file="${share}/config/${preset}.yaml"
if [[ ! -f ${params_file} ]]; then
    presets=()
    for file in "${share}"/config/*.yaml; do presets+=("$(basename "${file}" .yaml)"); done
    log "UHR_SEG_PRESET=${preset}: no ${params_file}; choose one of: ${presets[*]}"
    exit 2
fi

launch_args=("params_file:=${params_file}")
if [[ -n ${UHR_SEG_MODEL:-} ]]; then
    if [[ ! -f ${UHR_SEG_MODEL} ]]; then
        log "UHR_SEG_MODEL=${UHR_SEG_MODEL} does not exist in the container; mount the folder" \
            "holding it (compose: UHR_SEG_MODELS_DIR, seen as /models)"
        exit 2
    fi
    launch_args+=("model:=${UHR_SEG_MODEL}")
fi
launch_args+=("$@")

if [[ ${UHR_SEG_PREBUILD:-1} == 1 ]]; then
    log "checking the TensorRT engine cache (a miss builds the engine: minutes on a Jetson)"
    if ! python3 "${UHR_SEG_WS}/prebuild_engines.py" "${launch_args[@]}"; then
        log "continuing without a prebuilt engine; the node logs which backend it runs"
    fi
fi

log "ros2 launch uhr_seg_ros seg.launch.py ${launch_args[*]}"
exec ros2 launch uhr_seg_ros seg.launch.py "${launch_args[@]}"
