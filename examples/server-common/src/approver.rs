//! The periodic approval task: every `REFERRAL_REWARD_APPROVE_EVERY_SECS`,
//! pending rewards whose hold has ended become approved. Safe with many
//! processes on one store (each reward is approved once, by the store's
//! one atomic operation).

use std::sync::Arc;
use std::time::Duration;

use referral_core::{ApproveError, Clock, ReferralService, SystemClock};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Rewards approved per store call; the task calls again at once while a
/// call fills its batch.
pub const BATCH: usize = 500;

/// The approval task, not yet running: [`Approver::spawn`] starts it.
#[derive(Debug, Clone)]
pub struct Approver {
    service: Arc<ReferralService>,
    every: Duration,
}

/// A running approval task: [`ApproverHandle::stop`] ends it.
#[derive(Debug)]
pub struct ApproverHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Approver {
    /// A task approving `service`'s due rewards every `every`.
    #[must_use]
    pub fn new(service: Arc<ReferralService>, every: Duration) -> Self {
        Self { service, every }
    }

    /// Starts it on the current tokio runtime (first run at once).
    #[must_use]
    pub fn spawn(self) -> ApproverHandle {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(self.run(stopped));
        ApproverHandle { stop, task }
    }

    async fn run(self, mut stopped: oneshot::Receiver<()>) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tick.tick() => {}
            }
            loop {
                match self
                    .service
                    .approve_due_rewards(SystemClock.now(), BATCH)
                    .await
                {
                    Ok(approved) => {
                        if !approved.is_empty() {
                            tracing::debug!(count = approved.len(), "rewards approved");
                        }
                        if approved.len() < BATCH {
                            break;
                        }
                    }
                    Err(ApproveError::RewardsDisabled) => return,
                    Err(error) => {
                        tracing::warn!(%error, "approving due rewards failed; next run retries");
                        break;
                    }
                }
                if !matches!(stopped.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
                    return;
                }
            }
        }
    }
}

impl ApproverHandle {
    /// Stops the task (a store call in flight finishes first) and waits
    /// for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the approval task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use referral_core::StubSmsSender;
    use referral_memory::MemoryStore;

    #[tokio::test]
    async fn stops_when_asked() {
        let store = Arc::new(MemoryStore::new());
        let service = ReferralService::builder(Arc::clone(&store), Arc::new(StubSmsSender::new()))
            .rewards(store)
            .build()
            .unwrap();
        let handle = Approver::new(Arc::new(service), Duration::from_millis(10)).spawn();
        tokio::time::sleep(Duration::from_millis(30)).await;
        tokio::time::timeout(Duration::from_secs(5), handle.stop())
            .await
            .expect("the task stops");
    }
}
