//! A patient's contracts across servers: the patient's server (clinic) refuses to bring a
//! provider of another server (hospital) into the record without a contract; with one, the
//! provider joins through the hospital (`make_join`/`send_join` pass the clinic's check) and
//! reads what the patient sends; at the contract's end the clinic's executor removes the
//! provider, and the hospital learns it, reason and all.

use std::time::Duration;

use medrix_federation_tests::TestNet;
use medrix_tests::TestServer;
use medrix_tests::records::{
    contract, create_record, executor_of, now_ms, put_contract, wait_for_membership, whoami,
};
use serde_json::{Value, json};

/// The event removing `token`'s user from `room`, as their own server's `/sync` delivers it
/// (a removed member can no longer read the room's current state).
async fn removal_seen_in_sync(server: &TestServer, token: &str, since: &str, room: &str) -> Value {
    let mut since = since.to_owned();
    for _ in 0..20 {
        let path = format!("/_matrix/client/v3/sync?since={since}&timeout=1000");
        let (status, body) = server.call("GET", &path, Some(token), None).await;
        assert_eq!(status, 200, "{body}");
        let events = body["rooms"]["leave"][room]["timeline"]["events"].as_array();
        if let Some(leave) =
            events.into_iter().flatten().find(|e| e["content"]["membership"] == "leave")
        {
            return leave.clone();
        }
        since = body["next_batch"].as_str().unwrap().to_owned();
    }
    panic!("the removal never reached the member's server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_of_another_server_is_let_in_by_a_contract_and_removed_at_its_end() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;
    let doctor_id = whoami(&hospital.server, &doctor).await;
    let executor = executor_of(&clinic.server, &patient).await;
    let record = create_record(&clinic.server, &patient, &["laboratory"]).await;
    let lab = record.room("laboratory").to_owned();
    wait_for_membership(&clinic.server, &patient, &lab, &executor, "join", Duration::from_secs(5))
        .await;

    // No contract, no invitation, for a user of another server as for a local one.
    let invite = |room: String| {
        let path = format!("/_matrix/client/v3/rooms/{room}/invite");
        let (clinic, patient, doctor_id) = (&clinic, patient.clone(), doctor_id.clone());
        async move {
            clinic
                .server
                .call("POST", &path, Some(&patient), Some(json!({"user_id": doctor_id})))
                .await
        }
    };
    let (status, body) = invite(lab.clone()).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");

    // A contract for the laboratory, ending in 8 s: invited, the doctor joins through the
    // hospital and reads what the patient sends.
    let end = now_ms() + 8_000;
    let terms = contract("c-lab-remote", &doctor_id, &["laboratory"], end, "active");
    let (status, body) =
        put_contract(&clinic.server, &patient, &record.space, &doctor_id, terms).await;
    assert_eq!(status, 200, "{body}");
    for room in [record.space.clone(), lab.clone()] {
        let (status, body) = invite(room.clone()).await;
        assert_eq!(status, 200, "{body}");
        let join = format!("/_matrix/client/v3/join/{room}?via={}", clinic.server_name);
        let (status, body) =
            hospital.server.call("POST", &join, Some(&doctor), Some(json!({}))).await;
        assert_eq!(status, 200, "{body}");
    }
    wait_for_membership(
        &clinic.server,
        &patient,
        &lab,
        &doctor_id,
        "join",
        Duration::from_secs(10),
    )
    .await;
    let (status, body) = clinic
        .server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{lab}/send/m.room.message/t1"),
            Some(&patient),
            Some(json!({"msgtype": "m.text", "body": "HbA1c 6.1 %"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let messages = format!("/_matrix/client/v3/rooms/{lab}/messages?dir=b&limit=20");
    let mut read = false;
    for _ in 0..50 {
        let (_, page) = hospital.server.call("GET", &messages, Some(&doctor), None).await;
        let bodies = page["chunk"].as_array().into_iter().flatten();
        if bodies.filter_map(|e| e["content"]["body"].as_str()).any(|b| b == "HbA1c 6.1 %") {
            read = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(read, "the doctor read the patient's message through the hospital");
    let (_, synced) =
        hospital.server.call("GET", "/_matrix/client/v3/sync", Some(&doctor), None).await;
    let since = synced["next_batch"].as_str().unwrap().to_owned();

    // At the end the clinic's executor removes the doctor; the hospital learns it.
    let within = Duration::from_millis(end.saturating_sub(now_ms()) + 5_000);
    let removed =
        wait_for_membership(&clinic.server, &patient, &lab, &doctor_id, "leave", within).await;
    assert!(now_ms().saturating_sub(end) <= 5_000, "removed more than 5 s after the end");
    assert!(removed["reason"].as_str().unwrap_or_default().contains("c-lab-remote"), "{removed}");
    let seen_by_hospital = removal_seen_in_sync(&hospital.server, &doctor, &since, &lab).await;
    assert_eq!(seen_by_hospital["content"]["reason"], removed["reason"]);
    assert_eq!(seen_by_hospital["sender"], executor.as_str(), "{seen_by_hospital}");

    // And the doctor cannot come back on their own.
    let rejoin = format!("/_matrix/client/v3/join/{lab}?via={}", clinic.server_name);
    let (status, body) =
        hospital.server.call("POST", &rejoin, Some(&doctor), Some(json!({}))).await;
    assert_ne!(status, 200, "rejoined without a contract: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_ask_by_knocking_and_the_patient_approves_one_and_declines_another() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;
    let intern = hospital.server.register("intern", "pw").await;
    let doctor_id = whoami(&hospital.server, &doctor).await;
    let intern_id = whoami(&hospital.server, &intern).await;
    let record = create_record(&clinic.server, &patient, &["laboratory"]).await;
    let (space, lab) = (record.space.clone(), record.room("laboratory").to_owned());
    let knock = |token: String, body: Value| {
        let path = format!("/_matrix/client/v3/knock/{space}?via={}", clinic.server_name);
        let hospital = &hospital;
        async move { hospital.server.call("POST", &path, Some(&token), Some(body)).await }
    };
    let asked = json!({
        "purpose": "TREAT", "classes": ["laboratory"],
        "data_period": {"start": null, "end": null},
        "valid": {"start": now_ms(), "end": now_ms() + 3_600_000}, "mode": "read",
    });

    // Terms that break the rules are refused on the knocker's own server, and nothing is
    // sent.
    let mut wrong = asked.clone();
    wrong["classes"] = json!(["astrology"]);
    let (status, body) =
        knock(intern.clone(), json!({"reason": "ward round", "org.medrix.request": wrong})).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{body}");

    // Two knocks through the hospital; the patient's server holds each, terms and all.
    for token in [&doctor, &intern] {
        let request = json!({"reason": "follow-up of your HbA1c", "org.medrix.request": asked});
        let (status, body) = knock(token.clone(), request).await;
        assert_eq!(status, 200, "{body}");
    }
    let knocked = wait_for_membership(
        &clinic.server,
        &patient,
        &space,
        &doctor_id,
        "knock",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(knocked["org.medrix.request"], asked, "{knocked}");
    assert_eq!(knocked["reason"], "follow-up of your HbA1c");
    wait_for_membership(
        &clinic.server,
        &patient,
        &space,
        &intern_id,
        "knock",
        Duration::from_secs(10),
    )
    .await;

    // Approved: the contract the doctor asked for, then the invitations; the doctor joins.
    let mut terms =
        contract("c-asked", &doctor_id, &["laboratory"], now_ms() + 3_600_000, "active");
    terms["valid"] = asked["valid"].clone();
    let (status, body) = put_contract(&clinic.server, &patient, &space, &doctor_id, terms).await;
    assert_eq!(status, 200, "{body}");
    for room in [space.clone(), lab.clone()] {
        let path = format!("/_matrix/client/v3/rooms/{room}/invite");
        let invite = json!({"user_id": doctor_id});
        let (status, body) = clinic.server.call("POST", &path, Some(&patient), Some(invite)).await;
        assert_eq!(status, 200, "{body}");
        let join = format!("/_matrix/client/v3/join/{room}?via={}", clinic.server_name);
        let (status, body) =
            hospital.server.call("POST", &join, Some(&doctor), Some(json!({}))).await;
        assert_eq!(status, 200, "{body}");
    }

    // Declined: the intern's knock is turned away, and no contract lets them in.
    let path = format!("/_matrix/client/v3/rooms/{space}/kick");
    let decline = json!({"user_id": intern_id, "reason": "declined: not my care team"});
    let (status, body) = clinic.server.call("POST", &path, Some(&patient), Some(decline)).await;
    assert_eq!(status, 200, "{body}");
    let declined = wait_for_membership(
        &clinic.server,
        &patient,
        &space,
        &intern_id,
        "leave",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(declined["reason"], "declined: not my care team");
    let path = format!("/_matrix/client/v3/rooms/{lab}/invite");
    let invite = json!({"user_id": intern_id});
    let (status, body) = clinic.server.call("POST", &path, Some(&patient), Some(invite)).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_admits_an_emergency_clinician_for_a_short_time_and_tells_the_patient() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital", "lab"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let lab = net.start("lab", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let medic = hospital.server.register("er-medic", "pw").await;
    let stranger = lab.server.register("tech", "pw").await;
    let (medic_id, stranger_id) =
        (whoami(&hospital.server, &medic).await, whoami(&lab.server, &stranger).await);
    let executor = executor_of(&clinic.server, &patient).await;
    let record = create_record(&clinic.server, &patient, &["allergies", "laboratory"]).await;
    let (space, allergies) = (record.space.clone(), record.room("allergies").to_owned());
    wait_for_membership(
        &clinic.server,
        &patient,
        &space,
        &executor,
        "join",
        Duration::from_secs(5),
    )
    .await;

    // The patient's standing emergency contract for the hospital: allergies, 6 s per access.
    let standing = json!({
        "contract_id": "c-er", "grantee": hospital.server_name, "purpose": "ETREAT",
        "classes": ["allergies"], "data_period": {"start": null, "end": null},
        "valid": {"start": 0, "end": now_ms() + 3_600_000}, "mode": "read",
        "text": "In an emergency, the hospital's ER may see my allergies.", "status": "active",
        "emergency_access_ms": 6_000,
    });
    let path =
        format!("/_matrix/client/v3/rooms/{space}/state/org.medrix.grant/{}", hospital.server_name);
    let (status, body) = clinic.server.call("PUT", &path, Some(&patient), Some(standing)).await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/_matrix/client/v3/rooms/{allergies}/send/m.room.message/a1");
    let entry = json!({"msgtype": "m.text", "body": "Allergy: penicillin"});
    assert_eq!(clinic.server.call("PUT", &path, Some(&patient), Some(entry)).await.0, 200);

    // The ER medic breaks the glass (the patient's devices play no part); a clinician of a
    // server with no standing contract is turned away.
    let break_glass = |server: &'static str, token: String| {
        let path = format!("/_matrix/client/v3/knock/{space}?via={}", clinic.server_name);
        let body = json!({"reason": "emergency", "org.medrix.break_glass": {"reason": "unconscious, allergy check"}});
        let target = if server == "hospital" { &hospital } else { &lab };
        async move { target.server.call("POST", &path, Some(&token), Some(body)).await }
    };
    let (status, body) = break_glass("hospital", medic.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = break_glass("lab", stranger.clone()).await;
    assert_eq!(status, 200, "{body}");
    let opened = std::time::Instant::now();
    let refused = wait_for_membership(
        &clinic.server,
        &patient,
        &space,
        &stranger_id,
        "leave",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        refused["reason"].as_str().unwrap_or_default().starts_with("break-glass refused"),
        "{refused}"
    );

    // The executor invites the medic into the space and the allergies room, not laboratory.
    for room in [&space, &allergies] {
        wait_for_membership(
            &clinic.server,
            &patient,
            room,
            &medic_id,
            "invite",
            Duration::from_secs(10),
        )
        .await;
        let join = format!("/_matrix/client/v3/join/{room}?via={}", clinic.server_name);
        let (status, body) =
            hospital.server.call("POST", &join, Some(&medic), Some(json!({}))).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, lab_member) = clinic
        .server
        .call(
            "GET",
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{medic_id}",
                record.room("laboratory")
            ),
            Some(&patient),
            None,
        )
        .await;
    assert_eq!(lab_member["errcode"], "M_NOT_FOUND", "{lab_member}");

    // The patient is told at once, in the space: who, what, until when, why.
    let (_, page) = clinic
        .server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{space}/messages?dir=b&limit=50"),
            Some(&patient),
            None,
        )
        .await;
    let notice = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["content"]["org.medrix.break_glass_notice"].is_object())
        .unwrap_or_else(|| panic!("no break-glass notice: {page}"));
    assert_eq!(notice["sender"], executor.as_str());
    let told = &notice["content"]["org.medrix.break_glass_notice"];
    assert_eq!(told["clinician"], medic_id.as_str());
    assert_eq!(told["reason"], "unconscious, allergy check");
    assert_eq!(told["classes"], json!(["allergies"]));
    let (_, grant) = clinic
        .server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{space}/state/org.medrix.grant/user:{medic_id}"),
            Some(&patient),
            None,
        )
        .await;
    assert_eq!(grant["purpose"], "BTG", "{grant}");
    assert_eq!(grant["break_glass"]["standing_contract"], "c-er");

    // The medic reads what the patient's record gets while the glass is broken (what came
    // before needs backfill from the clinic, which servers do not request yet), then is
    // removed when the 6 s are up.
    let path = format!("/_matrix/client/v3/rooms/{allergies}/send/m.room.message/a2");
    let entry = json!({"msgtype": "m.text", "body": "Allergy: latex"});
    assert_eq!(clinic.server.call("PUT", &path, Some(&patient), Some(entry)).await.0, 200);
    let messages = format!("/_matrix/client/v3/rooms/{allergies}/messages?dir=b&limit=20");
    let mut read = false;
    for _ in 0..30 {
        let (_, page) = hospital.server.call("GET", &messages, Some(&medic), None).await;
        if page.to_string().contains("Allergy: latex") {
            read = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(read, "the medic read the allergies room");
    let removed = wait_for_membership(
        &clinic.server,
        &patient,
        &allergies,
        &medic_id,
        "leave",
        Duration::from_secs(6 + 5).saturating_sub(opened.elapsed()),
    )
    .await;
    assert!(removed["reason"].as_str().unwrap_or_default().contains("expired"), "{removed}");
}
