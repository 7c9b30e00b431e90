//! A room's timeline as clients page through it: the live timeline (stream positions: what
//! this server saw happen) above the history timeline (what happened before this server
//! joined, backfilled; see `rooms::remote::history`). A point of it is in one or the other;
//! a `/messages` token names a point: `s<position>` (a sync token, as before) or `h<slot>`.

use ruma::RoomId;

use super::{Access, AccessError};
use crate::{
    service::rooms::{position_from, remote::history::HISTORY_TOP},
    storage::{catalogue as cf, compound_key},
};

/// A point in a room's timeline. History sorts before live: every backfilled event happened
/// before this server joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimelinePoint {
    /// A slot of the history timeline.
    History(u64),
    /// A stream position of the live timeline (0: before every live event).
    Live(u64),
}

/// A row of the timeline: where it is and the event there.
pub struct Row {
    pub point: TimelinePoint,
    pub event_id: Box<[u8]>,
}

impl TimelinePoint {
    /// The point just before this one, or none at the very beginning.
    pub fn before(self) -> Option<TimelinePoint> {
        match self {
            TimelinePoint::Live(0) => Some(TimelinePoint::History(HISTORY_TOP)),
            TimelinePoint::Live(position) => Some(TimelinePoint::Live(position - 1)),
            TimelinePoint::History(0) => None,
            TimelinePoint::History(slot) => Some(TimelinePoint::History(slot - 1)),
        }
    }

    /// The token naming this point.
    pub fn token(self) -> String {
        match self {
            TimelinePoint::Live(position) => format!("s{position}"),
            TimelinePoint::History(slot) => format!("h{slot}"),
        }
    }

    /// A history token (`h<slot>`); other tokens are the sync tokens' to parse.
    pub fn parse_history(token: &str) -> Option<Option<TimelinePoint>> {
        let slot = token.strip_prefix('h')?;
        Some(slot.parse().ok().map(TimelinePoint::History))
    }
}

impl Access {
    /// Up to `limit` rows at or before `point`, newest first: the live timeline down to its
    /// start, then the history timeline.
    pub(super) fn rows_back(
        &self,
        room_id: &RoomId,
        point: TimelinePoint,
        limit: usize,
    ) -> Result<Vec<Row>, AccessError> {
        let prefix = compound_key(&[room_id.as_bytes(), b""]);
        let mut rows = Vec::new();
        let history_from = match point {
            TimelinePoint::Live(position) => {
                let live = self.storage.scan_back(
                    cf::ROOMPOSITION_EVENTID,
                    &prefix,
                    &position.to_be_bytes(),
                    limit,
                )?;
                rows.extend(live.into_iter().map(|(key, event_id)| Row {
                    point: TimelinePoint::Live(position_from(&key)),
                    event_id,
                }));
                HISTORY_TOP
            }
            TimelinePoint::History(slot) => slot,
        };
        if rows.len() < limit {
            let history = self.storage.scan_back(
                cf::ROOMHISTORY_EVENTID,
                &prefix,
                &history_from.to_be_bytes(),
                limit - rows.len(),
            )?;
            rows.extend(history.into_iter().map(|(key, event_id)| Row {
                point: TimelinePoint::History(position_from(&key)),
                event_id,
            }));
        }
        Ok(rows)
    }

    /// Up to `limit` rows after `point` and up to live position `upto`, oldest first: the rest
    /// of the history timeline, then the live one.
    pub(super) fn rows_forward(
        &self,
        room_id: &RoomId,
        point: TimelinePoint,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Row>, AccessError> {
        let at = |position: u64| compound_key(&[room_id.as_bytes(), &position.to_be_bytes()]);
        let mut rows = Vec::new();
        let live_from = match point {
            TimelinePoint::History(slot) => {
                if slot < HISTORY_TOP {
                    let history = self.storage.scan_range(
                        cf::ROOMHISTORY_EVENTID,
                        &at(slot + 1),
                        &at(HISTORY_TOP),
                        limit,
                    )?;
                    rows.extend(history.into_iter().map(|(key, event_id)| Row {
                        point: TimelinePoint::History(position_from(&key)),
                        event_id,
                    }));
                }
                1
            }
            TimelinePoint::Live(position) => position + 1,
        };
        if rows.len() < limit && live_from <= upto {
            let live = self.storage.scan_range(
                cf::ROOMPOSITION_EVENTID,
                &at(live_from),
                &at(upto),
                limit - rows.len(),
            )?;
            rows.extend(live.into_iter().map(|(key, event_id)| Row {
                point: TimelinePoint::Live(position_from(&key)),
                event_id,
            }));
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::TimelinePoint::{History, Live};
    use super::*;

    #[test]
    fn walking_back_goes_from_the_live_timeline_into_the_history_and_stops_at_its_start() {
        assert_eq!(Live(7).before(), Some(Live(6)));
        assert_eq!(Live(0).before(), Some(History(HISTORY_TOP)));
        assert_eq!(History(5).before(), Some(History(4)));
        assert_eq!(History(0).before(), None);
        assert!(History(HISTORY_TOP) < Live(0));
    }

    #[test]
    fn tokens_name_their_point() {
        assert_eq!(Live(12).token(), "s12");
        assert_eq!(History(40).token(), "h40");
        assert_eq!(TimelinePoint::parse_history("h40"), Some(Some(History(40))));
        assert_eq!(TimelinePoint::parse_history("hx"), Some(None));
        assert_eq!(TimelinePoint::parse_history("s12"), None);
    }
}
