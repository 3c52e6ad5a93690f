"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok as processes on 127.0.0.1 (see docs/testing.md)."""
