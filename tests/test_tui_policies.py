"""The Policies screen (6) when two policies share a kind name: Linkerd's AuthorizationPolicy
and ours, each its own row (by meshdojo's kind, which the operator API's items carry), each with
its own YAML. Textual refuses a duplicate row key, so one key for both would end the UI."""

from __future__ import annotations

from textual.widgets import DataTable, TextArea

from tests.test_tui import FixedSource, app
from tui.source import Snapshot


async def test_linkerds_authorization_policy_and_ours_of_one_name_are_two_rows_each_with_its_yaml():
    ours = {"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "AuthorizationPolicy",
            "metadata": {"namespace": "emojivoto", "name": "voting-policy"}, "spec": {"action": "DENY"}}
    linkerds = {"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "AuthorizationPolicy",
                "metadata": {"namespace": "emojivoto", "name": "voting-policy"},
                "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "voting-grpc"},
                         "requiredAuthenticationRefs": []}}

    class Both(FixedSource):
        def snapshot(self, window: str = "10s") -> Snapshot:
            snap = super().snapshot(window)
            snap.policies = [{"kind": "AuthorizationPolicy", "document": ours, "expiresAt": None},
                             {"kind": "AuthorizationPolicy.policy.linkerd.io", "document": linkerds, "expiresAt": None}]
            return snap

    ui = app(source=Both())
    async with ui.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        await pilot.pause()
        table = ui.query_one("#resources", DataTable)
        assert [table.get_row_at(i)[0] for i in range(table.row_count)] == ["AuthorizationPolicy", "AuthorizationPolicy.policy.linkerd.io"]
        table.focus()
        table.move_cursor(row=1)
        await pilot.press("enter")
        await pilot.pause()
        assert "apiVersion: policy.linkerd.io/v1alpha1" in ui.query_one("#yaml", TextArea).text
    assert ui.crash is None
