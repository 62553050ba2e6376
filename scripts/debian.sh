# scripts/debian.sh: installing Debian packages, for the scripts that need
# some (scripts/test.sh, bench/lib.sh). Sourced, not run; the caller
# defines `log MESSAGE...`.
#
#   debian_installed PACKAGE          true if dpkg has PACKAGE installed
#   install_debian_packages PKG...    installs the ones dpkg does not have
#
# install_debian_packages runs apt-get as root, or through sudo when not
# root; `apt-get update` runs only when an install is needed and the
# package lists do not have a package. On failure it returns 1 and leaves
# the reason in INSTALL_ERROR (also logged).

debian_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_debian_packages() {
    INSTALL_ERROR=
    local wanted=() package
    for package in "$@"; do
        debian_installed "$package" || wanted+=("$package")
    done
    [ ${#wanted[@]} -eq 0 ] && return 0
    local as_root=()
    if ! command -v apt-get >/dev/null 2>&1; then
        INSTALL_ERROR="missing ${wanted[*]}, and apt-get is not there to install them (not Debian?)"
    elif [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            as_root=(sudo)
        else
            INSTALL_ERROR="missing ${wanted[*]}: install them as root (apt-get install ${wanted[*]})"
        fi
    fi
    if [ -n "$INSTALL_ERROR" ]; then
        log "$INSTALL_ERROR"
        return 1
    fi
    local apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
    local install=("${apt[@]}" install -y -q --no-install-recommends "${wanted[@]}")
    # A fresh machine (or image) has no package lists: update first. Lists
    # that are there may be stale: update and try again if the install fails.
    local lists=("${APT_LISTS:-/var/lib/apt/lists}"/*_Packages*)
    local updated=
    if [ ! -e "${lists[0]}" ]; then
        log "apt-get update"
        "${apt[@]}" update -q >&2 && updated=1
    fi
    log "installing ${wanted[*]}"
    if ! "${install[@]}" >&2; then
        if [ -n "$updated" ] || { log "apt-get update"; ! "${apt[@]}" update -q >&2; } ||
            ! "${install[@]}" >&2; then
            INSTALL_ERROR="apt-get install ${wanted[*]} failed"
            log "$INSTALL_ERROR"
            return 1
        fi
    fi
    return 0
}
