# Build-time patch for gvisor.dev/gvisor/pkg/shim/v1/manager.go, applied by
# e2e/cluster/build.sh to a copy of the module (the module cache stays pristine).
# The shim lowers its own oom_score_adj to -999, which needs CAP_SYS_RESOURCE; this
# machine lacks it, so every gVisor pod would fail with "failed to set OOM Score on
# shim". 0 keeps the shim at containerd's own score, as containerd's runc shim does.
s/^\(\s*oomScoreMax\s*=\s*\)-999$/\10/
