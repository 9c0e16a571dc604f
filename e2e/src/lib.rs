//! Shared helpers for Kennel's end-to-end tests: a client on the local cluster's kubeconfig.
