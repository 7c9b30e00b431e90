//! Stream positions: every stored event gets the next position in one global order, and
//! readers (`/sync`) see a position only once it and every position before it is committed.
//! Commits finish out of order under group commit; without this, a reader could move past an
//! event that lands a moment later and never see it.

use std::{collections::BTreeSet, sync::Mutex};

use tokio::sync::watch;

pub struct StreamPositions {
    inner: Mutex<Inner>,
    visible: watch::Sender<u64>,
}

struct Inner {
    last_allocated: u64,
    in_flight: BTreeSet<u64>,
}

impl StreamPositions {
    /// Starts after `last_committed`, the highest position found in storage.
    pub fn new(last_committed: u64) -> Self {
        Self {
            inner: Mutex::new(Inner { last_allocated: last_committed, in_flight: BTreeSet::new() }),
            visible: watch::channel(last_committed).0,
        }
    }

    /// Takes the next position for an event about to be committed.
    pub fn allocate(&self) -> u64 {
        let mut inner = self.inner.lock().expect("stream lock");
        inner.last_allocated += 1;
        let position = inner.last_allocated;
        inner.in_flight.insert(position);
        position
    }

    /// Marks a position done, committed or abandoned; advances what readers see.
    pub fn finish(&self, position: u64) {
        let mut inner = self.inner.lock().expect("stream lock");
        inner.in_flight.remove(&position);
        let visible = match inner.in_flight.first() {
            Some(&lowest) => lowest - 1,
            None => inner.last_allocated,
        };
        self.visible.send_if_modified(|current| {
            let advanced = visible > *current;
            if advanced {
                *current = visible;
            }
            advanced
        });
    }

    /// The highest position readers may read up to.
    pub fn visible(&self) -> u64 {
        *self.visible.borrow()
    }

    /// Waits until the visible position passes `since`, or `timeout` elapses.
    pub async fn wait_past(&self, since: u64, timeout: std::time::Duration) -> u64 {
        let mut receiver = self.visible.subscribe();
        let _ = tokio::time::timeout(timeout, receiver.wait_for(|visible| *visible > since)).await;
        self.visible()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_never_see_past_a_position_still_being_committed() {
        let stream = StreamPositions::new(10);
        let (a, b) = (stream.allocate(), stream.allocate());
        stream.finish(b);
        assert_eq!(stream.visible(), 10, "11 is still in flight");
        stream.finish(a);
        assert_eq!(stream.visible(), 12);
    }
}
