"""Weight synchronisation between the learner and its actors: the APS controller (pure
decision logic) and the driver that runs its loop for either runtime."""

from beast.sync.aps import (APSController, SyncTrigger, controller_from_config, kl_per_slot,
                            sync_metrics)
from beast.sync.driver import SyncDriver

__all__ = ["APSController", "SyncDriver", "SyncTrigger", "controller_from_config",
           "kl_per_slot", "sync_metrics"]
