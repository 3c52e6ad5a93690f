"""The fields of Linkerd's ``Server`` and ``ServerAuthorization`` (``policy.linkerd.io``), as
:mod:`controlplane.policyschema` holds every kind's: the validator checks a document against
them, and on a cluster without Linkerd the CRDs (this subset) are made from them. What they
mean is :mod:`controlplane.linkerdserver`'s.
"""

from __future__ import annotations

from controlplane import inboundpolicy
from controlplane.schema import Bool, Labels, ListOf, PortOrName, Str, obj

LINKERD_GROUP = "policy.linkerd.io"
# the versions Linkerd's docs write them in, oldest first; the last is the one a CRD of ours stores
SERVER_VERSIONS = ("v1alpha1", "v1beta1", "v1beta2", "v1beta3")
SERVER_AUTHORIZATION_VERSIONS = ("v1alpha1", "v1beta1")
PROTOCOLS = ("unknown", "HTTP/1", "HTTP/2", "gRPC", "opaque", "TLS")

LABEL_SELECTOR = obj({
    "matchLabels": Labels(doc="the pods (or Servers) with all of these labels"),
    "matchExpressions": ListOf(obj({
        "key": Str(doc="a label's name"),
        "operator": Str(enum=("In", "NotIn", "Exists", "DoesNotExist"), doc="how the label's value is compared with values"),
        "values": ListOf(Str(allow_empty=True, doc="a value"), doc="In and NotIn: the values; Exists and DoesNotExist: none"),
    }, ("key", "operator")), doc="requirements on labels, every one"),
}, doc="Kubernetes' label selector: matchLabels and matchExpressions, every one must hold")

SERVER = obj({
    "podSelector": LABEL_SELECTOR,
    "port": PortOrName(doc="a port of the pods, by number or by the name in their containerPorts (as Linkerd's task: grpc)"),
    "proxyProtocol": Str(enum=PROTOCOLS, doc="kept as written: meshdojo's sidecars speak HTTP/1.1 on every port, so there "
                                             "is nothing to detect or skip"),
    "accessPolicy": Str(enum=inboundpolicy.POLICIES,
                        doc="who may call when no ServerAuthorization lets a caller in: deny (the default), audit (let in, "
                            "but logged and counted as deny would refuse), or one of Linkerd's default policies"),
}, ("podSelector", "port"))

NETWORK = obj({
    "cidr": Str(doc="an IP address or a CIDR block the caller's address is in"),
    "except": ListOf(Str(doc="a CIDR block"), doc="blocks inside cidr that do not count"),
}, ("cidr",))

SERVER_AUTHORIZATION = obj({
    "server": obj({
        "name": Str(doc="a Server of this namespace"),
        "selector": LABEL_SELECTOR,
    }, doc="which Servers this authorizes callers of: by name, or the Servers with some labels"),
    "client": obj({
        "meshTLS": obj({
            "serviceAccounts": ListOf(obj({
                "name": Str(doc="a ServiceAccount"),
                "namespace": Str(doc="its namespace (left out: the ServerAuthorization's)"),
            }, ("name",)), doc="callers with these ServiceAccounts' mesh identities"),
            "identities": ListOf(Str(doc="Linkerd's form, SA.NS.serviceaccount.identity.linkerd.cluster.local (a * for "
                                         "SA: any in NS), a SPIFFE ID, or * for any meshed caller"),
                                 doc="callers with these mesh identities"),
            "unauthenticatedTLS": Bool(doc="any caller over TLS: here every meshed caller (mutual TLS always names one)"),
        }, doc="meshed callers, over mutual TLS: exactly one of serviceAccounts, identities, unauthenticatedTLS"),
        "unauthenticated": Bool(doc="any caller, meshed or not"),
        "networks": ListOf(NETWORK, doc="and only from these addresses (left out: from anywhere)"),
    }, doc="who may call: exactly one of meshTLS and unauthenticated, and optionally networks"),
}, ("server", "client"))
