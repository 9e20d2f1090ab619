# shellcheck shell=bash
# A Docker engine for the image tier on a machine where none runs. Source this file, then:
#
#     docker_up              # before `tox -e image`
#     trap docker_down EXIT  # or call docker_down when done
#
# docker_up installs docker.io and debootstrap when they are missing (from the package lists as they are,
# refreshed once if that fails), starts dockerd with no bridge and no iptables rules (the tier's
# containers use the host network, on loopback only) and waits for its socket, with a deadline. An engine that already answers is used as it is, and
# docker_down then leaves it alone: both functions can be called twice.
#
# Settings: DOCKERD_LOG (default /tmp/ocr-dockerd.log), DOCKERD_TIMEOUT seconds (default 60).

DOCKERD_LOG=${DOCKERD_LOG:-/tmp/ocr-dockerd.log}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-60}
_DOCKERD_PID=${_DOCKERD_PID:-}

_docker_answers() {
    command -v docker >/dev/null 2>&1 && docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

_docker_log_tail() {
    echo "docker: last lines of $DOCKERD_LOG:" >&2
    tail -n 40 "$DOCKERD_LOG" >&2 || true
}

_docker_apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>"$DOCKERD_LOG.apt" 2>&1
}

docker_up() {
    if _docker_answers; then
        echo "docker: engine $(docker version --format '{{.Server.Version}}') already answers; using it"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "docker: no engine answers, and starting dockerd needs root; start Docker, then run again" >&2
        return 1
    fi
    local missing=()
    { command -v dockerd && command -v docker; } >/dev/null 2>&1 || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "docker: installing ${missing[*]}"
        # Package lists older than the mirror make the first try fail: refresh them once and retry.
        if ! _docker_apt_install "${missing[@]}"; then
            apt-get update -qq >>"$DOCKERD_LOG.apt" 2>&1 || true
            if ! _docker_apt_install "${missing[@]}"; then
                echo "docker: apt-get install ${missing[*]} failed; last lines of $DOCKERD_LOG.apt:" >&2
                tail -n 20 "$DOCKERD_LOG.apt" >&2
                return 1
            fi
        fi
    fi
    # A pid file left by an engine that died keeps a new one from starting.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    echo "docker: starting dockerd (log $DOCKERD_LOG)"
    dockerd --bridge=none --iptables=false >"$DOCKERD_LOG" 2>&1 &
    _DOCKERD_PID=$!
    local start=$SECONDS
    until _docker_answers; do
        if ! kill -0 "$_DOCKERD_PID" 2>/dev/null; then
            echo "docker: dockerd exited before its socket answered" >&2
            _docker_log_tail
            _DOCKERD_PID=""
            return 1
        fi
        if [ $((SECONDS - start)) -ge "$DOCKERD_TIMEOUT" ]; then
            echo "docker: dockerd's socket did not answer within ${DOCKERD_TIMEOUT}s" >&2
            _docker_log_tail
            docker_down
            return 1
        fi
        sleep 0.5
    done
    echo "docker: engine $(docker version --format '{{.Server.Version}}') ready after $((SECONDS - start))s"
}

docker_down() {
    [ -n "$_DOCKERD_PID" ] || return 0
    if kill -0 "$_DOCKERD_PID" 2>/dev/null; then
        kill -TERM "$_DOCKERD_PID" 2>/dev/null || true
        local start=$SECONDS
        while kill -0 "$_DOCKERD_PID" 2>/dev/null; do
            if [ $((SECONDS - start)) -ge 40 ]; then
                echo "docker: dockerd did not stop within 40s of SIGTERM; killing it" >&2
                kill -KILL "$_DOCKERD_PID" 2>/dev/null || true
                break
            fi
            sleep 0.5
        done
    fi
    wait "$_DOCKERD_PID" 2>/dev/null || true
    echo "docker: dockerd stopped"
    _DOCKERD_PID=""
}
