# Paths the user typed, resolved against the folder the user typed them in (sourced by eval_ahs.sh,
# run_ahs.sh and run_ahs_ablations.sh before they change into the repository).
#
#   source "$(dirname "${BASH_SOURCE[0]}")/tools/user_paths.sh"
#   OUTPUT="$(ahs_user_path "$OUTPUT")"            # a path to write: always the caller's folder
#   CONFIG="$(ahs_user_path "$CONFIG" repo)"        # a path to read: the caller's folder if it is
#                                                   # there, else the repository's (configs/...)
#   ahs_user_opts "$@"; set -- "${AHS_OPTS[@]}"     # KEY VALUE overrides that name paths
#
# Absolute paths, empty values and URLs (scheme://...) are left as they are. A path that exists
# neither in the caller's folder nor in the repository is made absolute against the caller's
# folder, so that a "does not exist" message names the file the user meant.
AHS_CALLER_DIR="$(pwd -P)"
AHS_REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

ahs_user_path() {  # ahs_user_path PATH [repo]
    local path="$1" fallback="${2:-}"
    case "$path" in
        ""|/*|*://*) printf '%s\n' "$path"; return ;;
        "~"|"~/"*) printf '%s\n' "${HOME}${path#\~}"; return ;;
    esac
    if [ "$fallback" = repo ] && [ ! -e "$AHS_CALLER_DIR/$path" ] && [ -e "$AHS_REPO_DIR/$path" ]; then
        printf '%s\n' "$AHS_REPO_DIR/$path"
    else
        printf '%s\n' "$AHS_CALLER_DIR/$path"
    fi
}

# A list literal of paths, as a config override gives DATASETS.FOLDER_DATASETS
# ("['mine/data.yaml', \"/abs/other.yaml\"]", or a tuple), with each quoted path resolved by
# ahs_user_path PATH repo: the caller's file, else the repository's (configs/datasets/...). A
# value that is not a list of quoted paths is left as typed (the config loader names the problem).
ahs_user_path_list() {  # ahs_user_path_list LITERAL
    local text="$1" open close inner part path quoted
    local -a parts=() items=()
    # Surrounding blanks off.
    text="${text#"${text%%[![:space:]]*}"}"; text="${text%"${text##*[![:space:]]}"}"
    case "$text" in
        \[*\]) open="[" close="]" ;;
        \(*\)) open="(" close=")" ;;
        *) printf '%s\n' "$1"; return ;;
    esac
    inner="${text:1:${#text}-2}"
    IFS=',' read -r -a parts <<< "$inner"
    for part in ${parts[@]+"${parts[@]}"}; do
        part="${part#"${part%%[![:space:]]*}"}"; part="${part%"${part##*[![:space:]]}"}"
        [ -n "$part" ] || continue  # a trailing comma
        case "$part" in
            \'*\') path="${part:1:${#part}-2}" ;;
            \"*\") path="${part:1:${#part}-2}" ;;
            *) printf '%s\n' "$1"; return ;;
        esac
        path="$(ahs_user_path "$path" repo)"
        case "$path" in
            *\'*) quoted="\"$path\"" ;;
            *) quoted="'$path'" ;;
        esac
        items+=("$quoted")
    done
    local joined="" item
    for item in ${items[@]+"${items[@]}"}; do
        joined="${joined:+$joined, }$item"
    done
    [ "$open" = "(" ] && [ ${#items[@]} -eq 1 ] && joined="$joined,"
    printf '%s\n' "$open$joined$close"
}

# Config keys whose value is a path: written (OUTPUT_DIR) or read (the rest). A read value is
# converted only when it exists in the caller's folder (CLIP_WEIGHTS may be a tag such as
# "openai"); each path of FOLDER_DATASETS (a list literal) as ahs_user_path_list resolves it.
ahs_user_opts() {  # ahs_user_opts KEY VALUE ... -> AHS_OPTS
    AHS_OPTS=()
    while [ $# -gt 0 ]; do
        local key="$1"
        AHS_OPTS+=("$key")
        shift
        [ $# -gt 0 ] || break
        local value="$1"
        shift
        case "$key" in
            OUTPUT_DIR) value="$(ahs_user_path "$value")" ;;
            MODEL.WEIGHTS|MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS)
                case "$value" in
                    ""|/*|*://*) ;;
                    *) [ -e "$AHS_CALLER_DIR/$value" ] && value="$AHS_CALLER_DIR/$value" ;;
                esac ;;
            DATASETS.FOLDER_DATASETS) value="$(ahs_user_path_list "$value")" ;;
        esac
        AHS_OPTS+=("$value")
    done
}

# The datasets root from the environment, if relative, is the caller's too.
if [ -n "${DETECTRON2_DATASETS:-}" ]; then
    DETECTRON2_DATASETS="$(ahs_user_path "$DETECTRON2_DATASETS")"
    export DETECTRON2_DATASETS
fi
# Unset, the Python code uses ./datasets when the current folder has one (else the repository's):
# the caller's current folder, not the repository the scripts change into.
if [ -z "${DETECTRON2_DATASETS:-}" ] && [ -d "$AHS_CALLER_DIR/datasets" ]; then
    export DETECTRON2_DATASETS="$AHS_CALLER_DIR/datasets"
fi
