"""Weight synchronisation policies between the learner and its actors."""

from beast.sync.aps import APSController, SyncTrigger, controller_from_config, sync_metrics

__all__ = ["APSController", "SyncTrigger", "controller_from_config", "sync_metrics"]
