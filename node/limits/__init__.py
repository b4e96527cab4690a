"""Alarm limits people set on a twin (``AlarmLimit`` Properties), checked at home.

``_rules`` reads the limits a model declares and decides, purely, when a reading
crosses one and when it is back; ``_service`` is the node's telemetry-buffer
consumer that raises and clears the alerts.
"""

from ._rules import LimitRule, LimitTracker, Transition, load_rules
from ._service import CONSUMER, LimitService

__all__ = ["CONSUMER", "LimitRule", "LimitService", "LimitTracker", "Transition", "load_rules"]
