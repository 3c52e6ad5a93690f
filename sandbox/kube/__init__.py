"""The Kubernetes side of the sandbox: what ``meshdojo install`` puts on a cluster (manifests
as data, from pure functions) and the few calls that put it there."""
