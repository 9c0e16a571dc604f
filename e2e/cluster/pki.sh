# Certificates for the local cluster: one CA signs every component's certificate.
# Sourced by up.sh after lib.sh. Keys are ECDSA P-256, which makes the whole set in
# well under a second.
# shellcheck shell=bash

PKI_DIR="$CLUSTER_DIR/pki"

# issue_cert NAME CN O KIND [SAN...]: KIND is "server", "client" or "both";
# SANs are "IP:1.2.3.4" or "DNS:name".
issue_cert() {
  local name="$1" cn="$2" org="$3" kind="$4"; shift 4
  local subj="/CN=$cn"; [[ -n "$org" ]] && subj="/O=$org$subj"
  local usage
  case "$kind" in
    server) usage="serverAuth" ;;
    client) usage="clientAuth" ;;
    both) usage="serverAuth,clientAuth" ;;
  esac
  local ext="$PKI_DIR/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    if [[ $# -gt 0 ]]; then local IFS=,; echo "subjectAltName=$*"; fi
  } >"$ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI_DIR/$name.key" 2>/dev/null
  openssl req -new -key "$PKI_DIR/$name.key" -subj "$subj" -out "$PKI_DIR/$name.csr"
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
    -CAcreateserial -days 365 -extfile "$ext" -out "$PKI_DIR/$name.crt" 2>/dev/null
  rm -f "$PKI_DIR/$name.csr" "$ext"
}

# write_kubeconfig FILE SERVER CERT_NAME: a kubeconfig that authenticates with a client
# certificate from the PKI directory.
write_kubeconfig() {
  local file="$1" server="$2" cert="$3"
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: kennel
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$PKI_DIR/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 <"$PKI_DIR/$cert.crt")
    client-key-data: $(base64 -w0 <"$PKI_DIR/$cert.key")
contexts:
- name: kennel
  context:
    cluster: kennel
    user: $cert
current-context: kennel
KUBECONFIG
  chmod 600 "$file"
}

make_pki() {
  rm -rf "$PKI_DIR" && mkdir -p "$PKI_DIR" && chmod 700 "$PKI_DIR"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI_DIR/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI_DIR/ca.key" -subj "/CN=kennel-local-ca" -days 365 \
    -out "$PKI_DIR/ca.crt"

  issue_cert apiserver kube-apiserver "" server \
    IP:127.0.0.1 "IP:$NODE_IP" "IP:$API_SERVER_SERVICE_IP" DNS:localhost DNS:kubernetes \
    DNS:kubernetes.default DNS:kubernetes.default.svc "DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
  issue_cert etcd etcd "" both IP:127.0.0.1 DNS:localhost
  issue_cert apiserver-etcd-client kube-apiserver-etcd-client "" client
  issue_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters client
  issue_cert admin kennel-admin system:masters client
  issue_cert controller-manager system:kube-controller-manager "" client
  issue_cert scheduler system:kube-scheduler "" client
  issue_cert kube-proxy system:kube-proxy "" client
  issue_cert kubelet "system:node:$NODE_NAME" system:nodes client
  issue_cert kubelet-server "$NODE_NAME" "" server "IP:$NODE_IP" IP:127.0.0.1 "DNS:$NODE_NAME"
  # kube-router watches pods, namespaces and policies cluster-wide; a dedicated identity
  # bound to a read-only ClusterRole (manifests/kube-router-rbac.yaml).
  issue_cert kube-router kennel:kube-router "" client

  # The service-account token signing key pair.
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI_DIR/sa.key" 2>/dev/null
  openssl ec -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
  rm -f "$PKI_DIR/ca.srl"
}
