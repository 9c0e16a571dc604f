#!/usr/bin/env bash
# Builds the cluster's Go components from the pinned go.mod files under e2e/tools/ and
# caches the binaries by version under ${XDG_CACHE_HOME:-~/.cache}/kennel/bin/. A tool
# whose cache directory already exists is not rebuilt, so a warm run takes a second.
#
# Usage: build.sh [tool...]   (default: every tool). Prints nothing but log lines;
# build output goes to e2e/.cluster/logs/build-<tool>.log.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# Builds run one after another: the machine has two cores and the Kubernetes build alone
# peaks at about 2 GiB.
export GOFLAGS="-buildvcs=false -trimpath"
export CGO_ENABLED=0

# build_tool TOOL VERSION LDFLAGS PKG[=NAME]...
# Builds each package of TOOL into its cache directory, renaming where NAME is given.
build_tool() {
  local tool="$1" version="$2" ldflags="$3"; shift 3
  local dest; dest="$(tool_cache_dir "$tool" "$version")"
  if [[ -f "$dest/.complete" ]]; then
    log "$tool $version: cached in $dest"
    return
  fi
  local logfile="$CLUSTER_DIR/logs/build-$tool.log" tmp="$dest.tmp" start; start="$(now_ms)"
  log "$tool $version: building (log: $logfile)"
  rm -rf "$tmp" && mkdir -p "$tmp"
  local spec pkg name
  for spec in "$@"; do
    pkg="${spec%%=*}"; name="${spec#*=}"; [[ "$spec" == *=* ]] || name="$(basename "$pkg")"
    if ! (cd "$TOOLS_DIR/$tool" && go build -ldflags "-s -w $ldflags" -o "$tmp/$name" "$pkg") \
         >>"$logfile" 2>&1; then
      tail -20 "$logfile" >&2
      die "$tool: building $pkg failed (see $logfile)"
    fi
  done
  touch "$tmp/.complete"
  rm -rf "$dest" && mv "$tmp" "$dest"
  log "$tool $version: built in $(( ($(now_ms) - start) / 1000 )) s"
}

build_kubernetes() {
  local v; v="$(pinned_version kubernetes k8s.io/kubernetes)"
  local minor="${v#v1.}"; minor="${minor%%.*}"
  local x="-X k8s.io/component-base/version"
  local ld="$x.gitVersion=$v $x.gitMajor=1 $x.gitMinor=$minor $x.gitTreeState=clean"
  ld+=" $x.buildDate=1970-01-01T00:00:00Z"
  ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$v"
  local c pkgs=()
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    pkgs+=("k8s.io/kubernetes/cmd/$c")
  done
  build_tool kubernetes "$v" "$ld" "${pkgs[@]}"
}

# patched_modfile TOOL MODULE FILE SEDFILE: copies MODULE out of the module cache (which
# must stay pristine, and which `go build -overlay` may not touch), applies SEDFILE to
# FILE in the copy, and prints the path of a go.mod that replaces MODULE with the copy,
# for `go build -modfile`.
patched_modfile() {
  local tool="$1" module="$2" file="$3" sedfile="$4" src work
  src="$(cd "$TOOLS_DIR/$tool" && go mod download -json "$module" \
    | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  [[ -f "$src/$file" ]] || die "$module has no $file to patch"
  work="$CLUSTER_DIR/patched/$tool"
  rm -rf "$work" && mkdir -p "$work" && cp -r "$src" "$work/module" && chmod -R u+w "$work/module"
  sed -f "$sedfile" "$src/$file" >"$work/module/$file"
  cmp -s "$src/$file" "$work/module/$file" && die "$sedfile no longer changes $module/$file"
  cp "$TOOLS_DIR/$tool/go.sum" "$work/go.sum"
  { cat "$TOOLS_DIR/$tool/go.mod"; echo; echo "replace $module => $work/module"; } >"$work/go.mod"
  echo "$work/go.mod"
}

build_gvisor() {
  local v modfile; v="$(pinned_version gvisor gvisor.dev/gvisor)"
  if [[ -f "$(tool_cache_dir gvisor "$v")/.complete" ]]; then
    log "gvisor $v: cached in $(tool_cache_dir gvisor "$v")"
    return
  fi
  modfile="$(patched_modfile gvisor gvisor.dev/gvisor pkg/shim/v1/manager.go \
    "$TOOLS_DIR/gvisor/shim-oom-score.sed")"
  GOFLAGS="$GOFLAGS -modfile=$modfile" build_tool gvisor "$v" "" gvisor.dev/gvisor/runsc \
    "gvisor.dev/gvisor/shim=containerd-shim-runsc-v1"
  rm -rf "$(dirname "$modfile")"
}

build_coredns() {
  local v; v="$(pinned_version coredns github.com/coredns/coredns)"
  build_tool coredns "$v" "" github.com/coredns/coredns
}

build_kube_router() {
  local v; v="$(pinned_version kube-router github.com/cloudnativelabs/kube-router/v2)"
  build_tool kube-router "$v" "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$v" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
}

build_crictl() {
  local v; v="$(pinned_version cri-tools sigs.k8s.io/cri-tools)"
  build_tool cri-tools "$v" "" sigs.k8s.io/cri-tools/cmd/crictl
}

# Helm is not part of the cluster: it is built only on request (`build.sh helm`), by
# `make deploy` and the chart tests.
build_helm() {
  local v; v="$(pinned_version helm helm.sh/helm/v4)"
  build_tool helm "$v" "-X helm.sh/helm/v4/internal/version.version=$v" helm.sh/helm/v4/cmd/helm
}

main() {
  mkdir -p "$CLUSTER_DIR/logs" "$CACHE_BIN"
  command -v go >/dev/null || die "go is not installed (the machine's Go 1.26 is needed)"
  local tools=("$@")
  [[ ${#tools[@]} -gt 0 ]] || tools=(kubernetes gvisor coredns kube-router cri-tools)
  local t
  for t in "${tools[@]}"; do
    case "$t" in
      kubernetes) build_kubernetes ;;
      gvisor) build_gvisor ;;
      coredns) build_coredns ;;
      kube-router) build_kube_router ;;
      cri-tools) build_crictl ;;
      helm) build_helm ;;
      *) die "unknown tool: $t" ;;
    esac
  done
}

main "$@"
