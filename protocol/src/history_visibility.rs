//! Who may see a room event: the Matrix history-visibility rules, as pure functions over facts
//! about the room's state *at the event* (its place in the DAG), never the order in which a
//! server happened to receive it. The homeserver's access service gathers the facts; the
//! audit verifier can gather the same facts from a room's DAG and reach the same answers.
//!
//! The rules (client-server API, "History visibility"), for a user and an event:
//! 1. `world_readable` at the event: anyone may see it.
//! 2. The user was joined at the event: they may see it.
//! 3. `shared` at the event, and the user is joined now: they may see it (the spec says
//!    "joined at any point after the event"; like Synapse, Medrix reads that as joined now,
//!    so a user who left or was removed sees nothing of the room beyond what they saw as a
//!    member).
//! 4. `invited` at the event, and the user was invited at it: they may see it.
//! 5. Otherwise not.
//!
//! An `m.room.history_visibility` event is visible if the setting before *or* after it allows
//! it. A user's own membership events are always visible to them: they are about the user,
//! and clients need them to show an invite or a removal. A value this crate does not know is
//! read as `joined`, the strictest.
//!
//! A server may see an event if one of its users may (the same rules, per server). An event
//! about one of its users' membership is always visible to it.

pub use ruma::events::room::{history_visibility::HistoryVisibility, member::MembershipState};

/// The room's history visibility around one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibilityAt {
    /// The setting in the state before the event (`shared` when the room has none).
    pub before: HistoryVisibility,
    /// For an `m.room.history_visibility` event, the setting it makes.
    pub set_by_event: Option<HistoryVisibility>,
}

impl VisibilityAt {
    /// The settings that may allow the event: the one before it, and the one it makes.
    fn settings(&self) -> impl Iterator<Item = &HistoryVisibility> {
        std::iter::once(&self.before).chain(&self.set_by_event)
    }
}

/// What is known of one user around one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAt {
    /// Their membership in the state before the event, if they had one.
    pub membership: Option<MembershipState>,
    /// Whether the event is a membership event about them.
    pub event_is_own_membership: bool,
    /// Whether they are joined to the room now.
    pub joined_now: bool,
}

/// What is known of one server around one event: its users' memberships before the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAt {
    /// One of its users was joined in the state before the event.
    pub any_joined: bool,
    /// One of its users was invited in the state before the event.
    pub any_invited: bool,
    /// Whether the event is a membership event about one of its users.
    pub event_is_own_membership: bool,
    /// One of its users is joined to the room now.
    pub joined_now: bool,
}

/// The history visibility an `m.room.history_visibility` content names, from its raw value.
pub fn parse_setting(value: Option<&str>) -> HistoryVisibility {
    match value {
        Some(value) => HistoryVisibility::from(value),
        None => HistoryVisibility::Shared,
    }
}

/// Whether one setting lets the holder of these facts see the event.
fn allows(setting: &HistoryVisibility, joined: bool, invited: bool, joined_now: bool) -> bool {
    joined
        || match setting {
            HistoryVisibility::WorldReadable => true,
            HistoryVisibility::Shared => joined_now,
            HistoryVisibility::Invited => invited,
            // `joined`, and any setting this crate does not know, allow nothing more.
            _ => false,
        }
}

/// Whether a user may see an event.
pub fn user_may_see(visibility: &VisibilityAt, user: &UserAt) -> bool {
    if user.event_is_own_membership {
        return true;
    }
    let joined = user.membership == Some(MembershipState::Join);
    let invited = user.membership == Some(MembershipState::Invite);
    visibility.settings().any(|setting| allows(setting, joined, invited, user.joined_now))
}

/// Whether a server may see an event.
pub fn server_may_see(visibility: &VisibilityAt, server: &ServerAt) -> bool {
    if server.event_is_own_membership {
        return true;
    }
    visibility
        .settings()
        .any(|setting| allows(setting, server.any_joined, server.any_invited, server.joined_now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(before: HistoryVisibility) -> VisibilityAt {
        VisibilityAt { before, set_by_event: None }
    }

    fn user(membership: Option<MembershipState>, joined_now: bool) -> UserAt {
        UserAt { membership, event_is_own_membership: false, joined_now }
    }

    #[test]
    fn a_member_joined_at_the_event_sees_it_whatever_the_setting() {
        for setting in [
            HistoryVisibility::WorldReadable,
            HistoryVisibility::Shared,
            HistoryVisibility::Invited,
            HistoryVisibility::Joined,
        ] {
            assert!(user_may_see(&at(setting), &user(Some(MembershipState::Join), false)));
        }
    }

    #[test]
    fn shared_history_is_for_members_joined_now_only() {
        let shared = at(HistoryVisibility::Shared);
        assert!(user_may_see(&shared, &user(None, true)));
        assert!(user_may_see(&shared, &user(Some(MembershipState::Invite), true)));
        // Removed (or left) since: the events from before their join stay closed to them.
        assert!(!user_may_see(&shared, &user(None, false)));
        assert!(!user_may_see(&shared, &user(Some(MembershipState::Leave), false)));
    }

    #[test]
    fn invited_history_starts_at_the_invite_and_joined_at_the_join() {
        let invited = at(HistoryVisibility::Invited);
        assert!(user_may_see(&invited, &user(Some(MembershipState::Invite), false)));
        assert!(!user_may_see(&invited, &user(None, true)));
        let joined = at(HistoryVisibility::Joined);
        assert!(!user_may_see(&joined, &user(Some(MembershipState::Invite), true)));
        assert!(!user_may_see(&joined, &user(None, true)));
    }

    #[test]
    fn nothing_after_a_kick_or_ban_reaches_the_removed_member() {
        for setting in
            [HistoryVisibility::Shared, HistoryVisibility::Invited, HistoryVisibility::Joined]
        {
            for removed in [MembershipState::Leave, MembershipState::Ban] {
                assert!(!user_may_see(&at(setting.clone()), &user(Some(removed), false)));
            }
        }
    }

    #[test]
    fn a_visibility_change_is_seen_by_whom_either_side_allows() {
        let opening = VisibilityAt {
            before: HistoryVisibility::Joined,
            set_by_event: Some(HistoryVisibility::WorldReadable),
        };
        assert!(user_may_see(&opening, &user(None, false)));
        let closing = VisibilityAt {
            before: HistoryVisibility::Joined,
            set_by_event: Some(HistoryVisibility::Joined),
        };
        assert!(!user_may_see(&closing, &user(None, false)));
    }

    #[test]
    fn an_unknown_setting_is_read_as_the_strictest() {
        let unknown = at(parse_setting(Some("everyone_please")));
        assert!(!user_may_see(&unknown, &user(None, true)));
        assert!(!user_may_see(&unknown, &user(Some(MembershipState::Invite), true)));
        assert!(user_may_see(&unknown, &user(Some(MembershipState::Join), false)));
        assert_eq!(parse_setting(None), HistoryVisibility::Shared);
    }

    #[test]
    fn own_membership_events_are_always_visible() {
        let own = UserAt {
            membership: Some(MembershipState::Ban),
            event_is_own_membership: true,
            joined_now: false,
        };
        assert!(user_may_see(&at(HistoryVisibility::Joined), &own));
    }
}
