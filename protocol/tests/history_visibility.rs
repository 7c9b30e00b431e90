//! Property tests of the history-visibility rules: a server sees exactly what one of its users
//! would, and no setting lets anyone outside the room see past their removal.

use medrix_protocol::history_visibility::{
    HistoryVisibility, MembershipState, ServerAt, UserAt, VisibilityAt, server_may_see,
    user_may_see,
};
use proptest::prelude::*;

fn setting() -> impl Strategy<Value = HistoryVisibility> {
    prop_oneof![
        Just(HistoryVisibility::WorldReadable),
        Just(HistoryVisibility::Shared),
        Just(HistoryVisibility::Invited),
        Just(HistoryVisibility::Joined),
    ]
}

fn membership() -> impl Strategy<Value = Option<MembershipState>> {
    prop_oneof![
        Just(None),
        Just(Some(MembershipState::Join)),
        Just(Some(MembershipState::Invite)),
        Just(Some(MembershipState::Leave)),
        Just(Some(MembershipState::Ban)),
        Just(Some(MembershipState::Knock)),
    ]
}

fn visibility() -> impl Strategy<Value = VisibilityAt> {
    (setting(), proptest::option::of(setting()))
        .prop_map(|(before, set_by_event)| VisibilityAt { before, set_by_event })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_server_sees_an_event_exactly_when_one_of_its_users_does(
        visibility in visibility(),
        users in proptest::collection::vec((membership(), any::<bool>()), 1..5),
        own_membership in any::<bool>(),
    ) {
        // `own_membership`: the event is about the first user's membership.

        let server = ServerAt {
            any_joined: users.iter().any(|(m, _)| *m == Some(MembershipState::Join)),
            any_invited: users.iter().any(|(m, _)| *m == Some(MembershipState::Invite)),
            event_is_own_membership: own_membership,
            joined_now: users.iter().any(|(_, now)| *now),
        };
        let any_user = users.iter().enumerate().any(|(index, (membership, joined_now))| {
            let user = UserAt {
                membership: membership.clone(),
                event_is_own_membership: own_membership && index == 0,
                joined_now: *joined_now,
            };
            user_may_see(&visibility, &user)
        });
        prop_assert_eq!(server_may_see(&visibility, &server), any_user);
    }

    #[test]
    fn outside_world_readable_a_user_neither_joined_at_the_event_nor_now_never_sees_it(
        visibility in visibility(),
        membership in membership(),
    ) {
        let world_readable = visibility.before == HistoryVisibility::WorldReadable
            || visibility.set_by_event == Some(HistoryVisibility::WorldReadable);
        let invited_allowed = membership == Some(MembershipState::Invite)
            && (visibility.before == HistoryVisibility::Invited
                || visibility.set_by_event == Some(HistoryVisibility::Invited));
        let user = UserAt { membership: membership.clone(), event_is_own_membership: false, joined_now: false };
        if !world_readable && !invited_allowed && membership != Some(MembershipState::Join) {
            prop_assert!(!user_may_see(&visibility, &user));
        }
    }
}
