"""An HTTPRoute's ``status.parents`` as the control plane writes it on a cluster: Gateway API's
Accepted and ResolvedRefs conditions with their reasons, our entry merged among other
controllers' and its transition times kept (pure; the cluster test writes them for real)."""

from __future__ import annotations

from controlplane.policy import parse
from controlplane.routestatus import CONTROLLER, desired, merged
from controlplane.statusbook import keep_times, without_times
from tests.test_gatewayapi import GW, gateway, route

SERVICES = {("shop", "web"), ("shop", "cart"), ("blog", "posts")}


def exists(namespace: str, name: str) -> bool:
    return (namespace, name) in SERVICES


def entry_entry() -> object:
    return parse({"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "ServiceEntry", "metadata": {"name": "payments", "namespace": "shop"},
                  "spec": {"hosts": ["pay.example.com"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}}, "se.yaml", 0)


def conditions(entry: dict) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for c in entry["conditions"]]


def test_a_route_on_a_gateway_is_accepted_or_says_gateway_apis_reason():
    gw = gateway(listeners=[{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"}])
    routes = [route("web", hostnames=("shop.example.com",)),
              route("cart", {"name": "web-gateway", "sectionName": "admin"}),  # no such listener
              route("posts", {"name": "web-gateway", "namespace": "shop"}, namespace="blog"),  # allowedRoutes: Same
              route("cart-org", hostnames=("shop.example.org",), rules=[{"backendRefs": [{"name": "cart"}]}]),
              route("nowhere", {"name": "missing-gateway"}, rules=[{"backendRefs": [{"name": "web"}]}])]
    status = desired([gw, *routes], {("shop", "web"): 4}, exists, "2026-11-29T00:00:00Z")
    web = status[("shop", "web")]
    assert web["parentRef"] == {"name": "web-gateway"} and web["controllerName"] == CONTROLLER
    assert conditions(web) == [("Accepted", "True", "Accepted"), ("ResolvedRefs", "True", "ResolvedRefs")]
    assert {c["observedGeneration"] for c in web["conditions"]} == {4}
    assert conditions(status[("shop", "cart")])[0] == ("Accepted", "False", "NoMatchingParent")
    assert conditions(status[("blog", "posts")])[0] == ("Accepted", "False", "NotAllowedByListeners")
    assert conditions(status[("shop", "cart-org")])[0] == ("Accepted", "False", "NoMatchingListenerHostname")
    nowhere = status[("shop", "nowhere")]["conditions"][0]
    assert (nowhere["reason"], nowhere["message"]) == (
        "NoMatchingParent", "Gateway shop/missing-gateway does not exist (yet): the route serves nothing until it does")


def test_a_mesh_routes_parent_and_backends_are_checked_against_the_services():
    mesh = route("web-split", {"kind": "Service", "name": "web"}, rules=[{"backendRefs": [{"name": "web"}, {"name": "web-v2"}]}])
    ghost = route("ghost", {"group": "", "name": "ghost"}, rules=[{}])
    egress = route("pay", {"group": "policy.meshdojo.dev", "kind": "ServiceEntry", "name": "payments"}, rules=[{}])
    status = desired([mesh, ghost, egress], {}, exists, "t")
    assert conditions(status[("shop", "web-split")]) == [("Accepted", "True", "Accepted"), ("ResolvedRefs", "False", "BackendNotFound")]
    assert status[("shop", "web-split")]["conditions"][1]["message"].startswith("no Service web-v2 in namespace shop")
    assert status[("shop", "ghost")]["parentRef"] == {"group": "", "name": "ghost"}
    assert conditions(status[("shop", "ghost")]) == [("Accepted", "False", "NoMatchingParent"), ("ResolvedRefs", "True", "ResolvedRefs")]
    assert conditions(status[("shop", "pay")])[0] == ("Accepted", "False", "NoMatchingParent")  # no ServiceEntry yet
    assert conditions(desired([egress, entry_entry()], {}, exists, "t")[("shop", "pay")])[0] == ("Accepted", "True", "Accepted")


def test_a_route_on_another_implementations_gateway_is_left_to_it():
    theirs = route("theirs", {"name": "nginx-gateway"})
    ours = route("ours")
    status = desired([gateway(), theirs, ours], {}, exists, "t", foreign=lambda ns, name: name == "nginx-gateway")
    assert set(status) == {("shop", "ours")}


def test_our_entry_replaces_ours_and_keeps_another_controllers():
    istio = {"parentRef": {"name": "web-gateway"}, "controllerName": "istio.io/gateway-controller", "conditions": []}
    old = {"parentRef": {"name": "web-gateway"}, "controllerName": CONTROLLER, "conditions": [{"type": "Accepted"}]}
    new = desired([gateway(), route("web")], {}, exists, "t")[("shop", "web")]
    assert merged({"parents": [istio, old]}, new) == {"parents": [istio, new]}
    assert merged(None, new) == {"parents": [new]}


def test_a_parent_entrys_conditions_keep_their_times_until_their_status_changes():
    gw, web = gateway(), route("web")
    first = desired([gw, web], {}, exists, "t1")[("shop", "web")]
    again = keep_times(desired([gw, web], {}, exists, "t2")[("shop", "web")], first)
    assert again == first and without_times(again) == without_times(first)
    gone = keep_times(desired([web], {}, exists, "t3")[("shop", "web")], again)  # the Gateway deleted: Accepted turns False
    assert [(c["type"], c["status"], c["lastTransitionTime"]) for c in gone["conditions"]] == [
        ("Accepted", "False", "t3"), ("ResolvedRefs", "True", "t1")]


def test_a_gateway_route_refused_by_its_gateway_still_reads_the_same_from_apply():
    """``apply``'s warning and the route's status give the same why (one function decides both)."""
    from controlplane.gatewayapi import not_attached

    stray = parse({"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": "stray", "namespace": "shop"},
                   "spec": {"parentRefs": [{"name": "web-gateway", "sectionName": "nope"}], "rules": [{"backendRefs": [{"name": "web"}]}]}},
                  "r.yaml", 0)
    status = desired([gateway(), stray], {}, exists, "t")[("shop", "stray")]
    assert status["conditions"][0]["message"] == not_attached([gateway(), stray], stray)


def test_a_status_in_an_applied_document_is_ignored_as_kubectl_apply_ignores_it():
    printed = {**route("web").document, "status": {"parents": [{"controllerName": CONTROLLER, "conditions": []}]}}
    assert parse(printed, "web.yaml", 0).document == route("web").document


def test_check_lists_the_routes_that_do_not_work_as_written():
    from controlplane.routestatus import problems

    routes = [route("web-split", {"kind": "Service", "name": "web"}, rules=[{"backendRefs": [{"name": "web"}, {"name": "web-v2"}]}]),
              route("ghost", {"group": "", "name": "ghost"}, rules=[{}]),
              route("fine", {"kind": "Service", "name": "cart"}, rules=[{}]),
              route("stray", {"name": "nowhere"}, rules=[{"backendRefs": [{"name": "web"}]}])]  # gatewayapi.route_problems says it
    assert problems(routes, exists) == [
        {"namespace": "shop", "name": "ghost", "message": "HTTPRoute shop/ghost: Accepted False (NoMatchingParent): "
                                                          "Service shop/ghost does not exist (yet)"},
        {"namespace": "shop", "name": "web-split", "message": "HTTPRoute shop/web-split: ResolvedRefs False (BackendNotFound): "
                                                              "no Service web-v2 in namespace shop: the requests its rules send "
                                                              "there are answered 502 unknown_service"}]


def test_a_service_routed_by_two_kinds_is_named_once():
    """An HTTPRoute and a VirtualService for one Service: the sidecars try the HTTPRoute's rules
    first; apply and check say so, once per Service, naming every route; one kind alone is fine."""
    from controlplane.routestatus import mixed_kinds

    gateway_api = parse({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web-split", "namespace": "shop"},
                         "spec": {"parentRefs": [{"kind": "Service", "group": "", "name": "web"}], "rules": [{}]}}, "r.yaml", 0)
    istio = parse({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"hosts": ["web"], "http": [{"route": [{"destination": {"host": "web"}}]}]}}, "vs.yaml", 0)
    other = parse({**istio.document, "metadata": {"name": "cart", "namespace": "shop"}, "spec": {**istio.document["spec"], "hosts": ["cart"]}},
                  "vs.yaml", 1)
    [found] = mixed_kinds([istio, other, gateway_api])
    assert (found["namespace"], found["names"], found["kind"]) == ("shop", ["web-split", "web"], "httproute")
    assert found["message"].startswith("svc/web (shop) is routed by routes of 2 kinds (HTTPRoute shop/web-split, "
                                       "VirtualService shop/web): its callers' sidecars try the HTTPRoute's rules first")
    assert mixed_kinds([istio, other]) == []
