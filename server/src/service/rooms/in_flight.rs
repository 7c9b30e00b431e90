//! A room's events queued for the group commit but not yet durable. The in-memory room runs
//! ahead of storage while they are in flight (local appends are pipelined so a busy room's
//! events share one fsync); a step that must find them in storage (an incoming event whose
//! state is resolved over the room's forward extremities) first waits for them.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::Notify;

#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    settled: Notify,
}

impl InFlight {
    /// Counts one more event in flight until the returned guard is dropped (once durable,
    /// or once its write failed).
    pub fn begin(self: &Arc<Self>) -> InFlightWrite {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightWrite(self.clone())
    }

    /// Waits until no event of the room is in flight. Callers hold the room's lock, so no new
    /// one can start meanwhile.
    pub async fn wait_all(&self) {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            settled.await;
        }
    }
}

/// One event in flight; dropping it marks the event settled.
pub struct InFlightWrite(Arc<InFlight>);

impl Drop for InFlightWrite {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.settled.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_ends_when_the_last_write_settles() {
        let in_flight = Arc::new(InFlight::default());
        in_flight.wait_all().await; // nothing in flight: returns at once
        let (first, second) = (in_flight.begin(), in_flight.begin());
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.wait_all().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(second);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }
}
