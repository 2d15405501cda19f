"""Weight synchronisation policies between the learner and its actors."""

from beast.sync.aps import (APSController, SyncTrigger, controller_from_config, kl_per_slot,
                            sync_metrics)

__all__ = ["APSController", "SyncTrigger", "controller_from_config", "kl_per_slot",
           "sync_metrics"]
