"""The control plane's Kubernetes mode (``--kubernetes``): the cluster is the source of truth.

- :mod:`.discovery`: services and endpoints from Services, EndpointSlices and Pods;
- :mod:`.policies`: policies from our CRs and HTTPRoutes (and the operator API's apply writes CRs);
- :mod:`.tokenreview`: a proxy's identity from its projected ServiceAccount token;
- :mod:`.webhook`: the sidecar injector's admission webhook;
- :mod:`.trustanchor`: the trust anchor as a ConfigMap in every namespace, for the proxies;
- :mod:`.castore`: the CA's keys from a Secret made at install.

The official ``kubernetes`` client is synchronous: each watch runs in its own thread and hands
events to the event loop, where every decision is made.
"""
