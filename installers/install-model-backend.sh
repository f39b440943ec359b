#!/usr/bin/env bash
# One-click installer for GeoLibre's SAM 3 model backend (Linux and macOS).
#
#   bash installers/install-model-backend.sh [options]     (--help lists them)
#
# 1. finds uv (GEOLIBRE_ML_UV, uv on PATH, an earlier bootstrap) or bootstraps
#    it with this machine's Python and pip: no administrator rights, nothing
#    downloaded from anywhere but the package index;
# 2. installs the geolibre-ml command from the project folder this script
#    lives in, into a folder of its own under the user's data folder;
# 3. shows the plan (what this computer can run), then runs
#    `geolibre-ml install` with its progress bar;
# 4. runs `geolibre-ml doctor` and ends with one line: the verdict.
#
# install-model-backend.ps1 beside this file is the same installer for Windows,
# step for step: keep the two in step (tests/installers checks flags and messages).
if [ -z "${BASH_VERSION:-}" ]; then
    exec bash "$0" "$@"  # started as `sh install-model-backend.sh`: the rest needs bash
fi
set -eu

UV_REQUIREMENT='uv>=0.9,<0.14'
UV_MIN_MINOR=9                 # uv 0.9 or newer (0.x releases)
UV_VERSION_TIMEOUT_S=20        # a uv that hangs on --version is not usable
CLI_VERSION_TIMEOUT_S=60       # the first start of a fresh environment compiles bytecode
CLI_MARKER='.geolibre-ml-complete'
TOTAL_STEPS=4

# ---------------------------------------------------------------- messages
say() { printf '%s\n' "$1"; }
info() { printf '      %s\n' "$1"; }
warn() { printf 'install-model-backend: warning: %s\n' "$1" >&2; }
step() { printf '\n[%s/%s] %s\n' "$1" "$TOTAL_STEPS" "$2"; }
fail() {
    # fail MESSAGE [FIX] [EXIT_CODE]: one sentence saying what broke, one saying what to do.
    printf 'install-model-backend: error: %s\n' "$1" >&2
    if [ -n "${2:-}" ]; then
        printf '  Fix: %s\n' "$2" >&2
    fi
    exit "${3:-1}"
}

usage() {
    cat <<'USAGE'
Usage: install-model-backend.sh [options]

Installs GeoLibre's SAM 3 model backend for this user (no administrator rights):
uv, the geolibre-ml command, the model environment and, with a Hugging Face
token, the SAM 3 weights. Run it again at any time: what is in place is kept.

Options:
  --backend NAME      SAM 3 backend: meta (NVIDIA GPU) or transformers (any computer)
  --build NAME        force a torch build (cpu, cu126, cu128, cu130)
  --token-file PATH   read the Hugging Face token from this file
  --token-stdin       read the Hugging Face token from standard input
  --ask-token         ask for the Hugging Face token (hidden input)
  --checkpoint PATH   use this local sam3.pt instead of downloading the weights
  --no-weights        install the environment only, not the weights
  --force             rebuild the model environment even if it is up to date
  --dry-run           show the plan and stop (installs only the geolibre-ml command)
  -y, --yes           never ask a question (for scripts)
  -v, --verbose       show the output of every tool
  -h, --help          show this help

The token is never shown or logged; HF_TOKEN from the environment is used too.

Environment:
  GEOLIBRE_ML_HOME     put everything under this folder instead of the user's data folder
  GEOLIBRE_ML_UV       the uv binary to use
  GEOLIBRE_ML_PROJECT  the geolibre-ml project folder (default: the one holding this script)
  UV_*                 uv's own settings (UV_INDEX_URL, UV_FIND_LINKS, UV_OFFLINE,
                       UV_CACHE_DIR, ...) are honoured; UV_PYTHON_DOWNLOADS defaults
                       to never (this computer's Python is used)

Exit codes: 0 done, 1 failed (the message says how to fix it), 2 bad option,
3 environment installed but the weights are not, 130 interrupted.
USAGE
}

# ---------------------------------------------------------------- options
backend=""
build=""
token_file=""
token_stdin=0
ask_token=0
checkpoint=""
no_weights=0
force=0
dry_run=0
assume_yes=0
verbose=0

usage_error() {
    printf 'install-model-backend: %s\n' "$1" >&2
    printf 'Run it with --help to see the options.\n' >&2
    exit 2
}

need_value() {
    # need_value "$@" at an option that takes a value: a usage error if none follows.
    if [ $# -lt 2 ]; then
        usage_error "$1 needs a value."
    fi
}

# flags:begin (tests/installers compares this list with the .ps1's)
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) need_value "$@"; backend=$2; shift 2 ;;
        --backend=*) backend=${1#*=}; shift ;;
        --build) need_value "$@"; build=$2; shift 2 ;;
        --build=*) build=${1#*=}; shift ;;
        --token-file) need_value "$@"; token_file=$2; shift 2 ;;
        --token-file=*) token_file=${1#*=}; shift ;;
        --token-stdin) token_stdin=1; shift ;;
        --ask-token) ask_token=1; shift ;;
        --checkpoint) need_value "$@"; checkpoint=$2; shift 2 ;;
        --checkpoint=*) checkpoint=${1#*=}; shift ;;
        --no-weights) no_weights=1; shift ;;
        --force) force=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -y | --yes) assume_yes=1; shift ;;
        -v | --verbose) verbose=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown option: $1" ;;
    esac
done
# flags:end

case "$backend" in
    "" | meta | transformers) ;;
    *) usage_error "--backend must be meta or transformers, not $backend." ;;
esac
token_sources=$((token_stdin + ask_token))
if [ -n "$token_file" ]; then
    token_sources=$((token_sources + 1))
fi
if [ "$token_sources" -gt 1 ]; then
    usage_error "give the token one way only: --token-file, --token-stdin or --ask-token."
fi
if [ "$ask_token" -eq 1 ] && [ "$assume_yes" -eq 1 ]; then
    usage_error "--ask-token asks a question, --yes forbids them: use --token-file or HF_TOKEN."
fi

# ---------------------------------------------------------------- interrupts and cleanup
interrupted=0
tmp_dir=""
trap 'interrupted=1' INT TERM
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ -n "$tmp_dir" ]; then
        rm -rf "$tmp_dir"
    fi
}
trap cleanup EXIT

check_interrupt() {
    # A child that got Ctrl-C (exit 130) or our own trap: stop, saying nothing broke.
    if [ "$interrupted" -eq 1 ] || [ "${1:-0}" -eq 130 ]; then
        printf '\n' >&2
        fail "Interrupted. Nothing half-installed was marked ready." \
            "Run this script again: it resumes where it stopped." 130
    fi
}

# A timeout without coreutils (macOS): perl's alarm survives the exec.
with_timeout() {
    local seconds=$1
    shift
    if command -v timeout >/dev/null 2>&1; then
        timeout "$seconds" "$@"
    elif command -v perl >/dev/null 2>&1; then
        perl -e 'alarm shift @ARGV; exec @ARGV or exit 127' "$seconds" "$@"
    else
        "$@"
    fi
}

is_true() {
    case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

absolute() {
    # A literal ~ from a configuration file or a quoted value, as Path.expanduser would.
    # shellcheck disable=SC2088
    case "$1" in
        "~") printf '%s' "$HOME" ;;
        "~/"*) printf '%s/%s' "$HOME" "${1#"~/"}" ;;
        /*) printf '%s' "$1" ;;
        *) printf '%s/%s' "$PWD" "$1" ;;
    esac
}

# ---------------------------------------------------------------- where things are
script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)
if [ -n "${GEOLIBRE_ML_PROJECT:-}" ]; then
    project=$(absolute "$GEOLIBRE_ML_PROJECT")
else
    project=$(dirname -- "$script_dir")
fi
if [ ! -f "$project/env-manager/pyproject.toml" ]; then
    fail "The geolibre-ml project was not found in $project (no env-manager/pyproject.toml)." \
        "Run the script from inside the project folder, or set GEOLIBRE_ML_PROJECT to it."
fi

# The same folders as platformdirs' user data folder for geolibre-ml (the
# env manager's Paths), so the app and this script share one installation.
if [ -n "${GEOLIBRE_ML_HOME:-}" ]; then
    data_dir="$(absolute "$GEOLIBRE_ML_HOME")/data"
elif [ -z "${HOME:-}" ]; then
    fail "The user's data folder is unknown (HOME or LOCALAPPDATA is not set)." "Set GEOLIBRE_ML_HOME to a folder for geolibre-ml."
elif [ "$(uname -s)" = "Darwin" ]; then
    data_dir="$HOME/Library/Application Support/geolibre-ml"
else
    data_dir="${XDG_DATA_HOME:-$HOME/.local/share}/geolibre-ml"
fi
cli_dir="$data_dir/cli"
bin_dir="$data_dir/bin"
log="$cli_dir/install-cli.log"

# This computer's Python, never one downloaded by uv: downloads come from
# GitHub (often blocked), and the plan reports the Python it found. Set
# UV_PYTHON_DOWNLOADS=automatic to let uv fetch one anyway.
export UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-never}"
# The project's spec (with its constraints file) is the one this script installs.
if [ -z "${GEOLIBRE_ML_SPEC:-}" ] && [ -f "$project/installers/model-env.toml" ]; then
    export GEOLIBRE_ML_SPEC="$project/installers/model-env.toml"
fi
# An activated virtual environment is not ours to install into.
unset VIRTUAL_ENV

mkdir -p "$cli_dir" || fail "Cannot create $cli_dir." "Check that you can write to $data_dir, or set GEOLIBRE_ML_HOME."
# Leftovers of runs that were killed: each run's scratch folder is tmp-PID.
for leftover in "$cli_dir"/tmp-*; do
    [ -d "$leftover" ] || continue
    if ! kill -0 "${leftover##*/tmp-}" 2>/dev/null; then
        rm -rf "$leftover"
    fi
done
tmp_dir="$cli_dir/tmp-$$"
mkdir -p "$tmp_dir"

run_logged() {
    # Tool output goes to the log (shown on failure); --verbose shows it live.
    if [ "$verbose" -eq 1 ]; then
        "$@"
    else
        "$@" >>"$log" 2>&1
    fi
}

log_tail() {
    if [ -s "$log" ]; then
        printf '  Last lines of %s:\n' "$log" >&2
        tail -n 15 "$log" | sed 's/^/    /' >&2
    fi
}

# ---------------------------------------------------------------- step 1: uv
uv_version_of() {
    # Prints the version of a working uv; returns 1 if it is not one, 2 if too old.
    local out version major rest minor
    out=$(with_timeout "$UV_VERSION_TIMEOUT_S" "$1" --version 2>/dev/null) || return 1
    version=$(printf '%s\n' "$out" | sed -n 's/^uv \([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1)
    [ -n "$version" ] || return 1
    printf '%s' "$version"
    major=${version%%.*}
    rest=${version#*.}
    minor=${rest%%.*}
    if [ "$major" -gt 0 ] || [ "$minor" -ge "$UV_MIN_MINOR" ]; then
        return 0
    fi
    return 2
}

find_python() {
    local candidate
    for candidate in python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 8))' >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

bootstrap_uv() {
    # uv from the package index with pip, in a scratch venv; only the finished
    # binary is moved into place, so an interrupted bootstrap leaves nothing.
    local python venv rc=0
    python=$(find_python) || fail "uv was not found, and there is no Python 3.8 or newer to install it with." \
        "Install uv or Python 3 with your package manager, or set GEOLIBRE_ML_UV to a uv binary."
    info "uv was not found: installing it with $python and pip (once, into $cli_dir/uv)."
    venv="$tmp_dir/bootstrap"
    : >"$log"
    run_logged "$python" -m venv "$venv" || rc=$?
    check_interrupt "$rc"
    if [ "$rc" -ne 0 ]; then
        log_tail
        fail "$python could not create a virtual environment to install uv in." \
            "Install your Python's venv module (on Debian or Ubuntu: the python3-venv package), or install uv and set GEOLIBRE_ML_UV."
    fi
    # pip gets uv's index settings, so a mirror or a wheelhouse works for both.
    local pip_args=(--disable-pip-version-check --quiet)
    if is_true "${UV_OFFLINE:-}" || is_true "${UV_NO_INDEX:-}"; then
        pip_args+=(--no-index)
    elif [ -z "${PIP_INDEX_URL:-}" ] && [ -n "${UV_DEFAULT_INDEX:-${UV_INDEX_URL:-}}" ]; then
        pip_args+=(--index-url "${UV_DEFAULT_INDEX:-${UV_INDEX_URL:-}}")
    fi
    if [ -n "${UV_FIND_LINKS:-}" ]; then
        local link links
        IFS=',' read -r -a links <<<"$UV_FIND_LINKS"
        for link in "${links[@]}"; do
            pip_args+=(--find-links "$link")
        done
    fi
    run_logged "$venv/bin/python" -m pip install "${pip_args[@]}" "$UV_REQUIREMENT" || rc=$?
    check_interrupt "$rc"
    if [ "$rc" -ne 0 ] || [ ! -x "$venv/bin/uv" ]; then
        log_tail
        fail "pip could not install uv from the package index." \
            "Check the network or proxy (HTTPS_PROXY), point UV_INDEX_URL or PIP_INDEX_URL at a mirror, or install uv and set GEOLIBRE_ML_UV."
    fi
    mkdir -p "$cli_dir/uv"
    cp "$venv/bin/uv" "$cli_dir/uv/uv.tmp-$$"
    chmod 755 "$cli_dir/uv/uv.tmp-$$"
    mv -f "$cli_dir/uv/uv.tmp-$$" "$cli_dir/uv/uv"
    rm -rf "$venv"
}

find_uv() {
    local version rc=0
    if [ -n "${GEOLIBRE_ML_UV:-}" ]; then
        version=$(uv_version_of "$GEOLIBRE_ML_UV") || rc=$?
        if [ "$rc" -ne 0 ]; then
            fail "GEOLIBRE_ML_UV=$GEOLIBRE_ML_UV is not a working uv 0.9 or newer." \
                "Point GEOLIBRE_ML_UV at a uv 0.9 or newer, or unset it to let this script find or install one."
        fi
        uv=$GEOLIBRE_ML_UV
        info "uv $version at $uv (GEOLIBRE_ML_UV)"
        return 0
    fi
    if command -v uv >/dev/null 2>&1; then
        uv=$(command -v uv)
        version=$(uv_version_of "$uv") || rc=$?
        if [ "$rc" -eq 0 ]; then
            info "uv $version at $uv (PATH)"
            return 0
        fi
        info "ignoring the uv on PATH ($uv): it is not a working uv 0.9 or newer."
        rc=0
    fi
    uv="$cli_dir/uv/uv"
    if [ -x "$uv" ]; then
        version=$(uv_version_of "$uv") || rc=$?
        if [ "$rc" -eq 0 ]; then
            info "uv $version at $uv (installed by an earlier run)"
            return 0
        fi
        rc=0
    fi
    bootstrap_uv
    version=$(uv_version_of "$uv") || fail "The uv just installed at $uv does not run." \
        "Security software may block new programs in $cli_dir: allow them, or set GEOLIBRE_ML_UV."
    info "uv $version at $uv (installed now)"
}

# ---------------------------------------------------------------- step 2: the geolibre-ml command
source_fingerprint() {
    # What the command is built from; a change gives a new folder and a rebuild.
    (
        cd "$project"
        find env-manager installers pyproject.toml uv.lock -type f \
            \( -name '*.py' -o -name '*.toml' -o -name '*.txt' -o -name '*.lock' \) \
            ! -path '*/__pycache__/*' ! -path '*/.*' 2>/dev/null | LC_ALL=C sort |
            while IFS= read -r file; do
                printf '%s ' "$file"
                cksum <"$file"
            done
    ) | cksum | sed 's/ .*//'
}

install_cli() {
    local python_args=() rc=0
    # Each source version gets its own folder, so the working command stays in
    # place while a new one is built; a half-built folder (no marker, written
    # last) from an interrupted run is removed and built again.
    rm -rf "$cli_env"
    : >"$log"
    if [ -z "${UV_PYTHON:-}" ]; then
        python_args=(--python '>=3.11')
    fi
    run_logged "$uv" venv --no-project ${python_args[@]+"${python_args[@]}"} "$cli_env" || rc=$?
    check_interrupt "$rc"
    if [ "$rc" -ne 0 ]; then
        log_tail
        fail "uv could not create an environment for the geolibre-ml command: it needs Python 3.11 or newer." \
            "Install Python 3.11 or 3.12 (python.org or your package manager), or set UV_PYTHON_DOWNLOADS=automatic to let uv download one."
    fi
    if [ -f "$project/uv.lock" ]; then
        # The locked versions: what the project was tested with, and what a
        # warm uv cache (from uv sync) already holds, so this works offline.
        UV_PROJECT_ENVIRONMENT="$cli_env" run_logged "$uv" sync --frozen --no-dev --no-editable \
            --package geolibre-env --project "$project" || rc=$?
        check_interrupt "$rc"
    else
        rc=1
    fi
    if [ "$rc" -ne 0 ]; then
        # A mirror or a wheelhouse (UV_INDEX_URL, UV_FIND_LINKS) serves a resolution, not the lock's URLs.
        rc=0
        run_logged "$uv" pip install --python "$cli_env/bin/python" "$project/env-manager" || rc=$?
        check_interrupt "$rc"
    fi
    if [ "$rc" -ne 0 ]; then
        log_tail
        fail "uv could not install the geolibre-ml command (the lines above say which package is missing)." \
            "Connect to the package index, point UV_INDEX_URL at a mirror or UV_FIND_LINKS at a wheelhouse, then run this script again."
    fi
    cli_version=$(with_timeout "$CLI_VERSION_TIMEOUT_S" "$cli" --version 2>>"$log") || {
        check_interrupt
        log_tail
        fail "The geolibre-ml command was installed but does not start." \
            "Security software may block new programs in $cli_dir: allow them, run this script again, and if it still fails run it with --verbose and report the output."
    }
    : >"$cli_env/$CLI_MARKER"
    info "$cli_version installed in $cli_env"
}

link_cli() {
    # bin/geolibre-ml points at the current build; replaced by a rename, never half-written.
    mkdir -p "$bin_dir"
    rm -f "$bin_dir/.geolibre-ml.tmp-$$"
    ln -s "../cli/env-$fingerprint/bin/geolibre-ml" "$bin_dir/.geolibre-ml.tmp-$$"
    mv -f "$bin_dir/.geolibre-ml.tmp-$$" "$bin_dir/geolibre-ml"
    local old
    for old in "$cli_dir"/env-*; do
        if [ -d "$old" ] && [ "${old##*/}" != "env-$fingerprint" ]; then
            rm -rf "$old" 2>/dev/null || true
        fi
    done
}

# ---------------------------------------------------------------- steps 3 and 4
# doctor summary (python) begin
write_doctor_summary() {
    # A plain here-document (not inside $(...), which bash 3.2 on macOS mis-parses).
    cat >"$1" <<'PY'
import json
import subprocess
import sys

cli, no_weights = sys.argv[1], sys.argv[2] == "1"
proc = subprocess.run(
    [cli, "doctor", "--json"], capture_output=True, text=True, encoding="utf-8", errors="replace"
)
if proc.returncode == 2 and "invalid choice" in proc.stderr:
    # An older geolibre-ml without the doctor: its status is what it can tell.
    sys.stdout.flush()
    subprocess.run([cli, "status"])
    print("Verdict: UNKNOWN. This geolibre-ml has no doctor command; the status above is what it knows.")
    sys.exit(0)
try:
    report = json.loads(proc.stdout)
except ValueError:
    for line in (proc.stderr or proc.stdout).strip().splitlines()[-5:]:
        print("  " + line)
    print(f"Verdict: FAILURE. geolibre-ml doctor gave no report (exit code {proc.returncode}).")
    sys.exit(1)
checks = report.get("checks", [])
for check in checks:
    if check.get("status") != "ok":
        print(f"  {check.get('status', '?').upper():8} {check.get('title')}: {check.get('detail')}")
        if check.get("fix"):
            print(f"           -> {check['fix']}")
failing = {check.get("id") for check in checks if check.get("status") == "failure"}
verdict = str(report.get("verdict", "failure"))
summary = report.get("summary", "")
if verdict == "failure" and no_weights and failing == {"weights"}:
    print(f"Verdict: INCOMPLETE (SAM 3 weights skipped with --no-weights). {summary}")
    sys.exit(0)
print(f"Verdict: {verdict.upper()}. {summary}")
sys.exit(1 if verdict == "failure" else 0)
PY
}
# doctor summary (python) end

# ---------------------------------------------------------------- main
say "Installing GeoLibre's SAM 3 model backend into $data_dir"

step 1 "Finding uv"
uv=""
find_uv

step 2 "Installing the geolibre-ml command"
fingerprint=$(source_fingerprint)
cli_env="$cli_dir/env-$fingerprint"
cli="$cli_env/bin/geolibre-ml"
cli_python="$cli_env/bin/python"
cli_version=""
if [ -f "$cli_env/$CLI_MARKER" ] &&
    cli_version=$(with_timeout "$CLI_VERSION_TIMEOUT_S" "$cli" --version 2>/dev/null); then
    info "$cli_version is already installed in $cli_env"
else
    check_interrupt
    install_cli
fi
link_cli
info "Run it later as: $bin_dir/geolibre-ml (add $bin_dir to PATH to type just geolibre-ml)"
check_interrupt

step 3 "Installing the model backend"
plan_args=()
if [ -n "$backend" ]; then
    plan_args+=(--backend "$backend")
fi
if [ -n "$build" ]; then
    plan_args+=(--build "$build")
fi
rc=0
plan=$("$cli" install --dry-run ${plan_args[@]+"${plan_args[@]}"} 2>&1) || rc=$?
check_interrupt "$rc"
if [ "$dry_run" -eq 1 ] || [ "$rc" -ne 0 ]; then
    printf '%s\n' "$plan"
else
    # What this computer can run, SAM 3 first among it, which sources answered just now,
    # and the plan's warnings (an unreachable Hub, a fallback), before anything is downloaded.
    printf '%s\n' "$plan" | awk '
        /^  (Machine|PyTorch|SAM 3):/ { sub(/^  /, "      "); print; next }
        /^    .*(answered \(HTTP|did not answer)/ { sub(/^    /, "      "); print; next }
        /^Warnings:/ { warn = 1; print "      Warnings:"; next }
        warn && /^  - / { print "      " substr($0, 3); next }
        { warn = 0 }' || true
fi
if [ "$rc" -ne 0 ]; then
    fail "The install cannot start on this computer: the plan above lists the problems." \
        "Fix the problems it lists, then run this script again."
fi
if [ "$dry_run" -eq 1 ]; then
    say "Dry run: only the geolibre-ml command was installed; the model backend was not."
    exit 0
fi
if [ "$assume_yes" -eq 0 ] && [ -t 0 ] && [ -t 1 ]; then
    printf 'Install the model backend now? [Y/n] '
    answer=""
    read -r answer || answer="n"
    check_interrupt
    case "$answer" in
        "" | y | Y | yes | Yes | YES) ;;
        *)
            say "Nothing was installed: run this script again when you are ready."
            exit 0
            ;;
    esac
fi

install_args=(install --wait ${plan_args[@]+"${plan_args[@]}"})
if [ -n "$token_file" ]; then
    install_args+=(--token-file "$token_file")
fi
if [ "$token_stdin" -eq 1 ]; then
    install_args+=(--token-stdin)
fi
if [ "$ask_token" -eq 1 ]; then
    install_args+=(--ask-token)
fi
if [ -n "$checkpoint" ]; then
    install_args+=(--checkpoint "$checkpoint")
fi
if [ "$no_weights" -eq 1 ]; then
    install_args+=(--no-weights)
fi
if [ "$force" -eq 1 ]; then
    install_args+=(--force)
fi
verbose_args=()
if [ "$verbose" -eq 1 ]; then
    verbose_args=(--verbose)
fi
install_rc=0
"$cli" ${verbose_args[@]+"${verbose_args[@]}"} "${install_args[@]}" || install_rc=$?
check_interrupt "$install_rc"
if [ "$install_rc" -eq 3 ]; then
    warn "The model environment is installed, but the SAM 3 weights are not (the message above says why)."
    info "To finish: fix what it names, then run this script again (a token: --ask-token or --token-file PATH; weights on disk: --checkpoint PATH)."
elif [ "$install_rc" -ne 0 ]; then
    fail "The model backend was not installed (geolibre-ml exit code $install_rc): the message above says why." \
        "Do what it says, then run this script again: it resumes where it stopped. For a full report: $bin_dir/geolibre-ml doctor"
fi

step 4 "Checking the installation (geolibre-ml doctor)"
write_doctor_summary "$tmp_dir/doctor_summary.py"
doctor_rc=0
PYTHONUTF8=1 "$cli_python" "$tmp_dir/doctor_summary.py" "$cli" "$no_weights" || doctor_rc=$?
check_interrupt "$doctor_rc"
if [ "$install_rc" -ne 0 ]; then
    exit "$install_rc"
fi
exit "$doctor_rc"
