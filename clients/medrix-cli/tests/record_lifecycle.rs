//! A patient with medrix-cli against a real `medrix serve`: registers, creates a record,
//! adds entries from a Bundle and from NDJSON over two data periods, lists them decrypted in
//! the right classes, corrects one, exports a valid FHIR R4 Bundle whose resources another
//! record takes in unchanged; and every kind of bad input is one line and a non-zero exit.

mod common;

use std::collections::BTreeMap;

use common::{Person, fixture, fixture_resources, listed_ids, validate_fhir};
use medrix_tests::{TestServer, medrix_binary};
use serde_json::Value;

/// What each fixture resource must be filed under (spec/records.md §10).
fn expected_classes() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("hr-2021", "vital-signs"),
        ("glucose-2021", "laboratory"),
        ("hypertension-2021", "conditions"),
        ("amlodipine-2021", "medications"),
        ("weight-2024", "vital-signs"),
        ("hba1c-2024", "laboratory"),
        ("flu-2024", "immunizations"),
        ("penicillin-2024", "allergies"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_adds_lists_corrects_and_exports_a_record_that_round_trips() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");

    let created = patient.json(&["record", "create"]);
    assert_eq!(created["created"], true);
    assert_eq!(created["patient"], "@patient:localhost");
    assert_eq!(created["classes"].as_object().unwrap().len(), 10, "a room per class: {created}");
    let again = patient.json(&["record", "create"]);
    assert_eq!(
        (again["created"].clone(), again["space"].clone()),
        (false.into(), created["space"].clone())
    );

    // Two data periods: 2021 from a Bundle, 2024 from NDJSON.
    let added = patient.json(&["record", "add", &fixture("period-2021.bundle.json")]);
    assert_eq!(added["added"].as_array().unwrap().len(), 4);
    let added = patient.json(&["record", "add", &fixture("period-2024.ndjson")]);
    assert_eq!(added["added"].as_array().unwrap().len(), 4);
    let hba1c =
        added["added"].as_array().unwrap().iter().find(|a| a["id"] == "hba1c-2024").unwrap();
    assert_eq!(hba1c["class"], "laboratory");
    assert_eq!(hba1c["clinical_time"], 1_706_776_200_000_i64, "2024-02-01T08:30:00Z");
    let hba1c_event = hba1c["event_id"].as_str().unwrap().to_owned();

    // Adding a file again (a retry after an interruption) duplicates nothing: each entry's
    // transaction ID is a hash of its room and content.
    patient.json(&["record", "add", &fixture("period-2024.ndjson")]);

    let list = patient.json(&["record", "list"]);
    assert!(list["unreadable"].as_array().unwrap().is_empty(), "{list}");
    let entries = list["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 8, "each resource once: {:?}", listed_ids(&list));
    for entry in entries {
        let id = entry["resource"]["id"].as_str().unwrap();
        assert_eq!(entry["class"], expected_classes()[id], "{id}");
        assert_eq!(entry["source"]["kind"], "patient");
        assert_eq!(entry["source"]["id"], "@patient:localhost");
    }
    // By clinical time: 2021 before 2024.
    let times: Vec<i64> = entries.iter().map(|e| e["clinical_time"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    let lab = patient.json(&["record", "list", "--class", "laboratory"]);
    assert_eq!(listed_ids(&lab), ["glucose-2021", "hba1c-2024"]);
    let text = patient.run(&["record", "list", "--class", "laboratory"]);
    assert!(text.success && text.stdout.contains("Hemoglobin A1c"), "{}", text.stdout);

    // A correction replaces the value; the original stays in the record.
    let corrected =
        patient.json(&["record", "correct", &hba1c_event, &fixture("hba1c-2024-corrected.json")]);
    assert_eq!(corrected["replaces"], hba1c_event.as_str());
    let lab = patient.json(&["record", "list", "--class", "laboratory"]);
    let entry = lab["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == hba1c_event.as_str())
        .unwrap();
    assert_eq!(entry["resource"]["valueQuantity"]["value"], 6.3);
    assert_eq!(entry["corrected_by"], corrected["event_id"]);
    let wrong_class = patient.fails(&["record", "correct", &hba1c_event, &fixture("patient.json")]);
    assert!(wrong_class.contains("Patient"), "{wrong_class}");

    // The export: a valid R4 collection of every entry, in its latest version.
    let export = patient.file("export.json");
    let exported = patient.json(&["record", "export", "--out", export.to_str().unwrap()]);
    assert_eq!(exported["entries"], 8);
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    if let Err(messages) = validate_fhir(&bundle) {
        panic!("the exported record is not valid FHIR R4:\n{messages}");
    }

    // Into a new record: every resource arrives unchanged, and exports the same.
    let second = Person::registered(&server, "second");
    second.json(&["record", "create"]);
    let taken = second.json(&["record", "add", export.to_str().unwrap()]);
    assert_eq!(taken["added"].as_array().unwrap().len(), 8);
    let export_again = second.file("export.json");
    second.json(&["record", "export", "--out", export_again.to_str().unwrap()]);
    let bundle_again: Value =
        serde_json::from_str(&std::fs::read_to_string(&export_again).unwrap()).unwrap();
    let by_id = |bundle: &Value| -> BTreeMap<String, Value> {
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                (entry["resource"]["id"].as_str().unwrap().to_owned(), entry["resource"].clone())
            })
            .collect()
    };
    assert_eq!(by_id(&bundle_again), by_id(&bundle), "resources changed on the way");
    // And they are the files' resources, the correction applied.
    let mut originals: BTreeMap<String, Value> = fixture_resources("period-2021.bundle.json")
        .into_iter()
        .chain(fixture_resources("period-2024.ndjson"))
        .map(|resource| (resource["id"].as_str().unwrap().to_owned(), resource))
        .collect();
    originals
        .insert("hba1c-2024".to_owned(), fixture_resources("hba1c-2024-corrected.json").remove(0));
    assert_eq!(by_id(&bundle), originals);
    let _ = std::fs::remove_file(export);
    let _ = std::fs::remove_file(export_again);

    // Another device of the patient: a login by full user ID, then a logout that deletes it.
    let laptop = Person::new(&server, "patient");
    let session = laptop.json(&["login", "@patient:localhost", "--password", "patient-password"]);
    assert_eq!(session["user_id"], "@patient:localhost");
    assert_eq!(laptop.json(&["whoami"])["device_id"], session["device_id"]);
    assert_eq!(laptop.json(&["record", "create"])["space"], created["space"], "the same record");
    assert_eq!(laptop.json(&["logout"])["logged_out"], true);
    assert!(!laptop.profile.join("session.json").exists());
    assert!(laptop.fails(&["whoami"]).contains("not logged in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_and_a_non_zero_exit() {
    let server = TestServer::start(&medrix_binary()).await;
    let nobody = Person::new(&server, "nobody");
    assert!(nobody.fails(&["record", "list"]).contains("not logged in"));
    assert!(
        nobody.fails(&["register", "nobody", "--password", "pw"]).contains("registration token")
    );

    let patient = Person::registered(&server, "patient");
    assert!(patient.fails(&["record", "list"]).contains("no record"));
    assert!(
        patient.fails(&["record", "add", &fixture("period-2024.ndjson")]).contains("no record")
    );
    patient.json(&["record", "create"]);

    let missing = patient.fails(&["record", "add", "/nonexistent/labs.json"]);
    assert!(missing.contains("cannot read /nonexistent/labs.json"), "{missing}");
    let not_fhir = patient.fails(&["record", "add", &fixture("not-fhir.txt")]);
    assert!(
        not_fhir.contains("not-fhir.txt is not FHIR R4") && not_fhir.contains("line 1"),
        "{not_fhir}"
    );
    let unroutable = patient.fails(&["record", "add", &fixture("patient.json")]);
    assert!(unroutable.contains("Patient cannot be filed"), "{unroutable}");
    let bad_date = patient.fails(&["record", "add", &fixture("bad-date.json")]);
    assert!(bad_date.contains("effectiveDateTime"), "{bad_date}");
    assert!(
        patient.json(&["record", "list"])["entries"].as_array().unwrap().is_empty(),
        "nothing was added"
    );

    let grant = |classes: &str, purpose: &str, extra: &[&str]| {
        let mut args = vec!["grant", "doctor", "--classes", classes, "--purpose", purpose];
        args.extend_from_slice(extra);
        patient.fails(&args)
    };
    let lab = |extra: &[&str]| grant("laboratory", "TREAT", extra);
    assert!(lab(&["--until", "next week"]).contains("`next week` is not a time"));
    assert!(lab(&["--until", "2026-02-30"]).contains("is not a time"));
    assert!(lab(&["--until", "2020-01-01"]).contains("--until must be later"));
    assert!(
        lab(&["--until", "+1d", "--data-from", "2024", "--data-until", "2023"])
            .contains("--data-until")
    );
    assert!(lab(&[]).contains("--until"));
    assert!(grant("laboratory", "SHOPPING", &["--until", "+1d"]).contains("PurposeOfUse"));
    assert!(grant("laboratory", "BTG", &["--until", "+1d"]).contains("break-glass"));
    assert!(grant("labs", "TREAT", &["--until", "+1d"]).contains("`labs` is not a record class"));
    assert!(
        patient
            .fails(&[
                "grant",
                "patient",
                "--classes",
                "notes",
                "--purpose",
                "TREAT",
                "--until",
                "+1d"
            ])
            .contains("yourself")
    );
    assert!(patient.fails(&["record", "list", "--class", "x-rays"]).contains("not a record class"));
    assert!(patient.fails(&["revoke", "doctor"]).contains("holds no contract"));
    assert!(patient.fails(&["consent", "export", "doctor"]).contains("holds no contract"));
    assert!(patient.fails(&["record", "list", "--patient", "stranger"]).contains("has not shared"));
    assert!(patient.fails(&["login", "patient", "--password", "x"]).contains("already logged in"));
    let wrong = Person::new(&server, "patient");
    assert!(wrong.fails(&["login", "patient", "--password", "wrong"]).contains("M_FORBIDDEN"));
    let nowhere = Person::at("http://127.0.0.1:1", "x");
    assert!(
        nowhere.fails(&["login", "x", "--password", "pw"]).contains("cannot reach the homeserver")
    );
    let no_url = Person::at("localhost:8008", "y");
    assert!(no_url.fails(&["login", "y", "--password", "pw"]).contains("is not a homeserver URL"));
}
