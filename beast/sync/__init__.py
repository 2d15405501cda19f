"""Weight synchronisation policies between the learner and its actors."""

from beast.sync.aps import APSController, SyncTrigger

__all__ = ["APSController", "SyncTrigger"]
