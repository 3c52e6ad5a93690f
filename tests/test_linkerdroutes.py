"""Linkerd's HTTPRoute on a Server (controlplane/linkerdroutes.py): per-route authorization as
Linkerd's Configuring Per-Route Policy task builds it, on emojivoto's emoji service — once a
route names the Server a request no route matches is unrouted (404 at the sidecar), a route no
policy authorizes lets nobody in (403), a policy on a route lets its callers send only what the
route matches; Gateway API's HTTPRoute of the same name is another kind; refusals by field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane import linkerdserver
from controlplane.authzrules import RequestFacts
from controlplane.linkerdroutes import chosen
from controlplane.linkerdschema import LINKERD_HTTP_ROUTE
from controlplane.policy import PolicyError, Resource, canonical_kind, parse
from controlplane.selection import Workload, applicable
from proxy.decisions import authorize
from sandbox.resourcetable import table

POLICIES = Path(__file__).resolve().parent.parent / "demo-apps/emojivoto/policies"
EMOJI = Workload("emojivoto", "emoji", "emoji", "emoji-0", {"app": "emoji"}, port=8080, port_name="http")
WEB, VOTING = "spiffe://meshdojo.local/ns/emojivoto/sa/web", "spiffe://meshdojo.local/ns/emojivoto/sa/voting"


def shipped(*names: str) -> list[Resource]:
    docs = [d for name in names for d in yaml.safe_load_all((POLICIES / f"{name}.yaml").read_text())]
    return [parse(doc, "task.yaml", i) for i, doc in enumerate(docs)]


def fate(resources: list[Resource], identity: str | None, path: str, method: str = "GET",
         headers: dict[str, str] | None = None) -> int:
    """What emoji's sidecar answers (proxy/access.py): 404 unrouted, 403 denied, 200 let through."""
    applied = applicable(resources, EMOJI, {})
    header = (headers or {}).get
    policies = applied["AuthorizationPolicy"].resources
    if applied["ServerRoutes"].resources:
        route = chosen(applied["ServerRoutes"].resources, path, header, method)
        if route is None:
            return 404
        policies = tuple(p for p in policies if linkerdserver.route_of(p) in (None, route.name))
    facts = RequestFacts(identity, "emojivoto", method, path, header=header, source_ip="10.0.0.5")
    return 200 if authorize(policies, facts).allowed else 403


def test_the_task_step_by_step_on_emoji():
    assert fate([], WEB, "/api/find") == 200
    server = shipped("emoji-server")
    assert fate(server, WEB, "/api/list") == 403 and fate(server, WEB, "/api/anything") == 403  # no route yet: no 404
    listing = shipped("emoji-server", "emoji-list-route")
    assert fate(listing, WEB, "/api/list") == 200 and fate(listing, VOTING, "/api/list") == 200  # any meshed caller
    assert fate(listing, None, "/api/list") == 403  # ... not a plaintext one
    assert fate(listing, WEB, "/api/find?shortcode=:joy:") == 404  # no route matches: 404, whoever asks
    assert fate(listing, WEB, "/api/list", "POST") == 404  # the route is GET only
    finding = shipped("emoji-server", "emoji-list-route", "emoji-find-route")
    assert fate(finding, WEB, "/api/find?shortcode=:joy:") == 403  # routed now, and nobody authorized
    done = shipped("emoji-server", "emoji-list-route", "emoji-find-route", "emoji-find-policy")
    assert fate(done, WEB, "/api/find?shortcode=:joy:") == 200 and fate(done, VOTING, "/api/find") == 403
    assert fate(done, VOTING, "/api/list") == 200
    # what describe and authz name: each route's policy, its route in the annotation
    applied = applicable(done, EMOJI, {})
    assert [r.name for r in applied["ServerRoutes"].resources] == ["emoji-find-route", "emoji-list-route"]
    names = {r.name: r for r in applied["AuthorizationPolicy"].resources}
    # and each route's ALLOW of nobody: a request it carries that no policy of its own names is denied
    assert set(names) == {"emoji-find-policy.authorizationpolicy", "emoji-list-policy.authorizationpolicy",
                          "emoji-find-route.httproute", "emoji-list-route.httproute"}
    annotations = names["emoji-find-policy.authorizationpolicy"].document["metadata"]["annotations"]
    assert annotations[linkerdserver.DERIVED_FROM] == "Linkerd's AuthorizationPolicy emojivoto/emoji-find-policy, route emoji-find-route"
    assert annotations[linkerdserver.ROUTE_ANNOTATION] == "emoji-find-route"
    assert names["emoji-find-policy.authorizationpolicy"].document["spec"]["rules"] == [
        {"from": [{"source": {"principals": ["meshdojo.local/ns/emojivoto/sa/web"]}}],
         "to": [{"operation": {"paths": ["/api/find"], "methods": ["GET"]}}]}]


def route(*matches: dict[str, Any], rules: list | None = None) -> dict[str, Any]:
    return {"apiVersion": "policy.linkerd.io/v1beta1", "kind": "HTTPRoute", "metadata": {"namespace": "emojivoto", "name": "r"},
            "spec": {"parentRefs": [{"name": "emoji-http", "kind": "Server", "group": "policy.linkerd.io"}],
                     **({"rules": rules} if rules is not None else {"rules": [{"matches": list(matches)}]})}}


def anyone_on_r() -> list[Resource]:
    policy = {"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "AuthorizationPolicy",
              "metadata": {"namespace": "emojivoto", "name": "p"},
              "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "HTTPRoute", "name": "r"},
                       "requiredAuthenticationRefs": []}}
    return [*shipped("emoji-server"), parse(policy, "p.yaml", 0)]


@pytest.mark.parametrize(("match", "lets", "not_"), [
    ({"path": {"value": "/api"}}, ["/api", "/api/list", "/api/find?x=1"], ["/apis", "/other"]),  # PathPrefix, the default
    ({"path": {"value": "/api/"}}, ["/api/", "/api/list"], ["/apix"]),  # what is under /api/
    ({"path": {"type": "Exact", "value": "/api/list"}}, ["/api/list", "/api/list?x"], ["/api/list/x", "/api"]),
    ({"path": {"value": "/"}}, ["/", "/anything/at/all"], []),
    ({"method": "GET"}, ["/anything"], []),
])
def test_path_matches_are_gateway_apis_and_the_same_for_404_and_for_authorization(match, lets, not_):
    resources = [*anyone_on_r(), parse(route(match), "r.yaml", 0)]
    assert all(fate(resources, None, path) == 200 for path in lets), [(p, fate(resources, None, p)) for p in lets]
    assert all(fate(resources, None, path) == 404 for path in not_)


def test_headers_and_rules_without_matches():
    resources = [*anyone_on_r(), parse(route({"path": {"value": "/api"}, "headers": [{"name": "X-Canary", "value": "1"}]}), "r", 0)]
    assert fate(resources, None, "/api/list", headers={"x-canary": "1"}) == 200
    assert fate(resources, None, "/api/list", headers={"x-canary": "2"}) == 404
    everything = [*anyone_on_r(), parse(route(rules=[{"matches": [{"path": {"value": "/a"}}]}, {}]), "r", 0)]
    assert fate(everything, None, "/zzz") == 200  # a rule without matches matches every request
    assert fate([*anyone_on_r(), parse(route(rules=[]), "r", 0)], None, "/zzz") == 200  # no rules: every request


def test_a_server_level_policy_still_covers_every_route_but_not_the_unrouted():
    server_wide = {"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "AuthorizationPolicy",
                   "metadata": {"namespace": "emojivoto", "name": "voting-may"},
                   "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "emoji-http"},
                            "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": "voting"}]}}
    resources = [*shipped("emoji-server", "emoji-list-route", "emoji-find-route"), parse(server_wide, "s", 0)]
    assert fate(resources, VOTING, "/api/find") == 200 and fate(resources, WEB, "/api/find") == 403
    assert fate(resources, VOTING, "/api/other") == 404


def test_routes_of_another_server_or_port_change_nothing_here():
    other = route({"path": {"value": "/api/list"}})
    other["spec"]["parentRefs"][0]["name"] = "voting-grpc"
    resources = [*shipped("emoji-server"), parse(other, "r", 0)]
    assert fate(resources, WEB, "/api/find") == 403  # denied by the Server, not unrouted
    said = linkerdserver.warnings(resources[1], resources, [EMOJI])
    assert said == ["HTTPRoute.policy.linkerd.io emojivoto/r: there is no Server voting-grpc in emojivoto (yet); "
                    "the route takes effect once there is"]


def test_a_policy_of_a_route_that_is_not_there_is_warned_about():
    (server, policy, authn) = shipped("emoji-server", "emoji-find-policy")
    said = linkerdserver.warnings(policy, [server, policy, authn], [EMOJI])
    assert said == ["AuthorizationPolicy.policy.linkerd.io emojivoto/emoji-find-policy: there is no HTTPRoute emoji-find-route "
                    "(policy.linkerd.io) on a Server in emojivoto (yet); it authorizes the requests it matches once there is"]


def test_linkerds_httproute_is_a_kind_of_its_own_beside_gateway_apis():
    (linkerds,) = shipped("emoji-find-route")
    assert linkerds.kind == LINKERD_HTTP_ROUTE == canonical_kind("httproutes.policy.linkerd.io")
    assert canonical_kind("httproute") == "HTTPRoute"
    rows = table([{"document": linkerds.document, "expiresAt": None}])
    assert rows[1][1:5] == (LINKERD_HTTP_ROUTE, "emoji-find-route", "server/emoji-http", "GET /api/find")
    for version in ("v1alpha1", "v1beta1", "v1beta2", "v1beta3"):
        assert parse({**linkerds.document, "apiVersion": f"policy.linkerd.io/{version}"}, "v", 0).kind == LINKERD_HTTP_ROUTE


@pytest.mark.parametrize(("change", "field", "says"), [
    ({"parentRefs": [{"name": "emoji", "kind": "Gateway"}]}, "spec.parentRefs[0].kind", "expected one of Server, Service"),
    ({"parentRefs": [{"name": "emoji-http", "kind": "Server", "group": "gateway.networking.k8s.io"}]}, "spec.parentRefs[0].group",
     'expected one of policy.linkerd.io, "", core'),
    ({"parentRefs": [{"name": "emoji-http", "kind": "Server", "group": "core"}]}, "spec.parentRefs[0].group",
     "a Server's group is policy.linkerd.io"),
    ({"parentRefs": []}, "spec.parentRefs", "expected a non-empty list of parentRefs"),
    ({"rules": [{"matches": [{"path": {"type": "RegularExpression", "value": "/a.*"}}]}]}, "spec.rules[0].matches[0].path.type",
     "expected one of Exact, PathPrefix"),
    ({"rules": [{"matches": [{"path": {"value": "/api/*"}}]}]}, "spec.rules[0].matches[0].path.value", "without *"),
    ({"rules": [{"matches": [{"path": {"value": "api"}}]}]}, "spec.rules[0].matches[0].path.value", "must start with '/'"),
    ({"rules": [{"matches": [{"method": "FETCH"}]}]}, "spec.rules[0].matches[0].method", "expected one of GET"),
    ({"rules": [{"matches": [{"queryParams": [{"name": "a", "value": "b"}]}]}]}, "spec.rules[0].matches[0].queryParams", "unknown"),
    ({"rules": [{"backendRefs": [{"name": "emoji"}]}]}, "spec.rules[0].backendRefs", "make the route's parent the Service"),
])
def test_refusals_name_the_field(change, field, says):
    doc = route({"path": {"value": "/a"}})
    doc["spec"].update(change)
    with pytest.raises(PolicyError) as err:
        parse(doc, "r.yaml", 0)
    assert err.value.field == field and says in err.value.message, err.value


def test_a_gateway_api_route_on_a_server_points_to_linkerds():
    doc = {**route({"path": {"value": "/a"}}), "apiVersion": "gateway.networking.k8s.io/v1"}
    with pytest.raises(PolicyError) as err:
        parse(doc, "r.yaml", 0)
    assert err.value.field == "spec.parentRefs[0].kind"
    assert "write the route as Linkerd's HTTPRoute (apiVersion policy.linkerd.io/v1beta3)" in err.value.message


def test_authz_shows_linkerds_route_and_server_columns():
    from controlplane import authzview
    from sandbox.observe import authz_table

    applied = applicable(shipped("emoji-server", "emoji-list-route", "emoji-find-route", "emoji-find-policy"), EMOJI, {})
    policies = applied["AuthorizationPolicy"]
    counts = {("allow", "emojivoto/emoji-find-policy.authorizationpolicy"): 20.0}
    rows = authzview.rows([(counts, 10.0)], policies.resources, policies.levels)
    assert [(r["route"], r["server"], r["policy"], r["allowed_rps"]) for r in rows] == [
        ("emoji-find-route", "emoji-http", "emojivoto/emoji-find-policy.authorizationpolicy", 2.0),
        ("emoji-find-route", "emoji-http", "emojivoto/emoji-find-route.httproute", 0.0),
        ("emoji-list-route", "emoji-http", "emojivoto/emoji-list-policy.authorizationpolicy", 0.0),
        ("emoji-list-route", "emoji-http", "emojivoto/emoji-list-route.httproute", 0.0)]
    table = authz_table({"rows": rows})
    assert table[0][:3] == ("ROUTE", "SERVER", "POLICY") and table[1][:2] == ("emoji-find-route", "emoji-http")
    server_wide = applicable(shipped("emoji-server"), EMOJI, {})["AuthorizationPolicy"]
    (row,) = authzview.rows([], server_wide.resources, server_wide.levels)
    assert (row["route"], row["server"]) == ("default", "emoji-http")  # Linkerd's name for a Server's every request
    assert authz_table({"rows": [{**row, "server": ""}]})[0][0] == "POLICY"  # no Server: the columns as before


def test_a_request_two_routes_match_goes_by_the_one_gateway_api_ranks_first():
    """An Exact path over a prefix, a longer prefix over a shorter: only the chosen route's
    policies decide, as in Linkerd (not whichever of the two would let the caller in)."""
    def policy(name: str, target: str, service_account: str) -> dict[str, Any]:
        return {"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "AuthorizationPolicy",
                "metadata": {"namespace": "emojivoto", "name": name},
                "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "HTTPRoute", "name": target},
                         "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": service_account}]}}

    wide, narrow = route({"path": {"value": "/api"}}), route({"path": {"type": "Exact", "value": "/api/find"}})
    wide["metadata"]["name"], narrow["metadata"]["name"] = "api", "find"
    resources = [*shipped("emoji-server"), *(parse(d, "r", i) for i, d in enumerate(
        (wide, narrow, policy("voting-on-api", "api", "voting"), policy("web-on-find", "find", "web"))))]
    assert fate(resources, VOTING, "/api/list") == 200 and fate(resources, WEB, "/api/list") == 403  # only the wide route
    assert fate(resources, WEB, "/api/find") == 200
    assert fate(resources, VOTING, "/api/find") == 403  # the narrow route is chosen: the wide one's policy does not count
    applied = applicable(resources, EMOJI, {})["ServerRoutes"].resources
    assert chosen(applied, "/api/find", lambda _n: None, "GET").name == "find"
    assert chosen(applied, "/api/findx", lambda _n: None, "GET").name == "api"
    assert chosen(applied, "/other", lambda _n: None, "GET") is None
