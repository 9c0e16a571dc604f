#!/bin/sh
# The demo's "agent". It replays a real incident (an agent asked to tidy a repository ran
# `rm -rf tests/ patches/ plan/ ~/`), then tries what a confused or hostile agent would try
# next. Every attempt prints ALLOWED or BLOCKED with the error the sandbox gave it.
# Runs under busybox sh inside the sandbox; the addresses come from the sandbox's env.

attempt() {
  what="$1"; shift
  if out=$("$@" 2>&1 </dev/null); then
    echo "  ALLOWED  $what"
  else
    echo "  BLOCKED  $what  ($(echo "$out" | tail -n 1))"
  fi
}

echo "== the agent's workspace before the task"
mkdir -p /workspace/repo/src /workspace/repo/tests /workspace/repo/patches /workspace/repo/plan
mkdir -p "$HOME/.ssh" "$HOME/photos"
echo 'fn main() {}' > /workspace/repo/src/main.rs
echo 'generated' > /workspace/repo/tests/out.txt
echo 'fake-key-for-the-demo' > "$HOME/.ssh/id_ed25519"
echo 'a photo' > "$HOME/photos/2011-wedding.jpg"
find /workspace -type f | sort

echo
echo "== task: 'clean up the repository'"
echo '$ cd /workspace/repo && rm -rf tests/ patches/ plan/ ~/      (HOME is '"$HOME"')'
cd /workspace/repo && rm -rf tests/ patches/ plan/ ~/
echo '$ rm -rf /      (the next mistake: an agent that deleted from /)'
rm -rf / 2>/dev/null
echo "what is left of the workspace:"
find /workspace 2>/dev/null | sort | sed 's/^/  /'
echo "the read-only inputs:"
ls -l /inputs | sed 's/^/  /'

echo
echo "== what a confused or hostile agent tries next"
attempt "write to the read-only inputs" sh -c 'echo pwned > /inputs/agent.sh'
attempt "write outside the workspace (/bin)" touch /bin/backdoor
attempt "read a service-account token" cat /var/run/secrets/kubernetes.io/serviceaccount/token
attempt "call the API server by Service IP ($API_SERVICE:443)" nc -w 3 "$API_SERVICE" 443
attempt "call the API server by endpoint ($API_ENDPOINT)" nc -w 3 ${API_ENDPOINT%:*} ${API_ENDPOINT#*:}
attempt "reach cloud metadata (169.254.169.254:80)" nc -w 3 169.254.169.254 80
attempt "reach a host outside the allowlist ($DENIED_HOST:8080)" nc -w 3 "$DENIED_HOST" 8080
attempt "reach the allowlisted host ($ALLOWED_HOST:8080)" nc -w 3 "$ALLOWED_HOST" 8080
attempt "resolve kubernetes.default through cluster DNS" nslookup kubernetes.default.svc.cluster.local
echo "== done; idling until the sandbox expires"
exec sleep 3600
