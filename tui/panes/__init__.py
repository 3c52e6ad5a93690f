"""The UI's screens, one module each, in the order of their keys (1-9)."""

from tui.panes.dashboard import Dashboard
from tui.panes.faults import Faults
from tui.panes.lessons import Lessons
from tui.panes.logs import Logs
from tui.panes.policies import Policies
from tui.panes.security import Security
from tui.panes.tap import Tap
from tui.panes.topology import Topology
from tui.panes.traces import Traces

PANES = (Dashboard, Topology, Tap, Security, Faults, Policies, Logs, Lessons, Traces)

__all__ = ["PANES", "Dashboard", "Faults", "Lessons", "Logs", "Policies", "Security", "Tap", "Topology", "Traces"]
