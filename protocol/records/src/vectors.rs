//! Checks a records test-vector file (`spec/vectors/records/`, kinds `records_*`) against this
//! implementation. The formats are in `spec/vectors/README.md`; this is their reference
//! reading, used by this crate's tests and meant for `medrix vectors verify`.

use serde_json::Value;

use crate::break_glass::break_glass_window;
use crate::class::DataClass;
use crate::evaluate::{Action, Decision, covering, evaluate};
use crate::fhir::clinical_time::clinical_time_ms;
use crate::fhir::consent::to_consent;
use crate::fhir::datetime::parse_interval;
use crate::fhir::route::route;
use crate::grant::Grant;
use crate::ids::UserId;
use crate::request::AccessRequest;

/// What checking one vector file found.
#[derive(Debug, Default)]
pub struct VectorReport {
    /// Individual checks that held.
    pub passed: usize,
    /// Checks that failed, each described.
    pub failures: Vec<String>,
}

impl VectorReport {
    fn expect_eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got == want {
            self.passed += 1;
        } else {
            self.failures.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
}

/// Whether a vector file's kind is one this module checks.
pub fn is_records_kind(kind: &str) -> bool {
    kind.starts_with("records_")
}

/// Checks one vector file given as text. A file that cannot be read as a vector at all is an
/// `Err`; failed checks are listed in the report.
pub fn check_vector_text(text: &str) -> Result<VectorReport, String> {
    let file: Value = serde_json::from_str(text).map_err(|err| format!("not JSON: {err}"))?;
    let mut report = VectorReport::default();
    let cases = file["cases"].as_array().ok_or("no `cases` list")?;
    match file["kind"].as_str().unwrap_or_default() {
        "records_grant_parsing" => check_cases(cases, &mut report, check_parsing)?,
        "records_evaluation" => {
            let grants = &file["grants"];
            check_cases(cases, &mut report, |case, report| check_evaluation(grants, case, report))?
        }
        "records_break_glass" => {
            let standing = read_grant(&file["standing"])?;
            check_cases(cases, &mut report, |case, report| {
                check_break_glass(&standing, case, report)
            })?
        }
        "records_fhir_datetime" => check_cases(cases, &mut report, check_datetime)?,
        "records_routing" => check_cases(cases, &mut report, check_routing)?,
        "records_consent" => check_cases(cases, &mut report, check_consent)?,
        other => return Err(format!("unknown records vector kind {other:?}")),
    }
    Ok(report)
}

fn check_cases(
    cases: &[Value],
    report: &mut VectorReport,
    mut check: impl FnMut(&Value, &mut VectorReport) -> Result<(), String>,
) -> Result<(), String> {
    for case in cases {
        check(case, report).map_err(|err| format!("case {}: {err}", case["name"]))?;
    }
    Ok(())
}

fn read_grant(event: &Value) -> Result<Grant, String> {
    let state_key = event["state_key"].as_str().ok_or("grant without `state_key`")?;
    Grant::from_event(state_key, &event["content"]).map_err(|err| err.to_string())
}

/// `{state_key, content}` (or `request` for an access request object) → `expect`: `"ok"`, or
/// `{"error": "shape" | "value", "field": path}`.
fn check_parsing(case: &Value, report: &mut VectorReport) -> Result<(), String> {
    let name = case["name"].as_str().unwrap_or_default();
    let result = match case.get("request") {
        Some(request) => AccessRequest::from_content(request).map(|_| ()),
        None => {
            let state_key = case["state_key"].as_str().ok_or("no `state_key`")?;
            Grant::from_event(state_key, &case["content"]).map(|_| ())
        }
    };
    let got = match result {
        Ok(()) => Value::from("ok"),
        Err(crate::Error::Shape { field, .. }) => {
            serde_json::json!({"error": "shape", "field": field})
        }
        Err(crate::Error::Value { field, .. }) => {
            serde_json::json!({"error": "value", "field": field})
        }
        Err(other) => serde_json::json!({"error": other.kind()}),
    };
    report.expect_eq(name, got, case["expect"].clone());
    Ok(())
}

fn read_action(action: &Value) -> Result<Action, String> {
    let class = action["class"]
        .as_str()
        .and_then(DataClass::parse)
        .ok_or("action without a known `class`")?;
    match action["kind"].as_str() {
        Some("hold") => Ok(Action::Hold { class }),
        Some("contribute") => Ok(Action::Contribute { class }),
        Some("read") => {
            Ok(Action::Read { class, clinical_time_ms: action["clinical_time"].as_i64() })
        }
        _ => Err("action `kind` must be hold, read or contribute".to_owned()),
    }
}

fn decision_json(decision: &Decision) -> Value {
    match decision {
        Decision::Allowed { contract_id, purpose } => serde_json::json!({
            "decision": "allowed", "contract_id": contract_id, "purpose": purpose}),
        Decision::Denied(denial) => {
            serde_json::json!({"decision": "denied", "reason": denial.as_str()})
        }
    }
}

/// `grant` (a key of the file's `grants`), `action`, `at`, perhaps `user` → `expect` (a
/// decision).
fn check_evaluation(grants: &Value, case: &Value, report: &mut VectorReport) -> Result<(), String> {
    let name = case["name"].as_str().unwrap_or_default();
    let key = case["grant"].as_str().ok_or("no `grant`")?;
    let grant = read_grant(&grants[key])?;
    let action = read_action(&case["action"])?;
    let at = case["at"].as_u64().ok_or("no `at`")?;
    // With `user`, the contract is matched to who acts (`covering`, which also finds a
    // standing contract's custodian); without, it is evaluated for its grantee.
    let decision = match case.get("user") {
        Some(user) => {
            let user = user.as_str().and_then(UserId::parse).ok_or("`user` is no user ID")?;
            covering([&grant], &user, &action, at)
        }
        None => evaluate(&grant, &action, at),
    };
    report.expect_eq(name, decision_json(&decision), case["expect"].clone());
    Ok(())
}

/// `clinician`, `at` → `expect`: `{"until": ms}` or `{"denied": reason}`.
fn check_break_glass(
    standing: &Grant,
    case: &Value,
    report: &mut VectorReport,
) -> Result<(), String> {
    let name = case["name"].as_str().unwrap_or_default();
    let clinician = case["clinician"].as_str().and_then(UserId::parse).ok_or("bad `clinician`")?;
    let at = case["at"].as_u64().ok_or("no `at`")?;
    let got = match break_glass_window(standing, &clinician, at) {
        Ok(window) => serde_json::json!({"until": window.until_ms}),
        Err(denial) => serde_json::json!({"denied": denial.as_str()}),
    };
    report.expect_eq(name, got, case["expect"].clone());
    Ok(())
}

/// `input` → `expect`: `{"start": ms, "end": ms}` (the interval) or `null` (not a date).
fn check_datetime(case: &Value, report: &mut VectorReport) -> Result<(), String> {
    let input = case["input"].as_str().ok_or("no `input`")?;
    let got = parse_interval(input)
        .map_or(Value::Null, |(start, end)| serde_json::json!({"start": start, "end": end}));
    report.expect_eq(input, got, case["expect"].clone());
    Ok(())
}

/// `resource` → `expect`: `{"class", "clinical_time": ms | null}` or `{"error": kind}`.
fn check_routing(case: &Value, report: &mut VectorReport) -> Result<(), String> {
    let name = case["name"].as_str().unwrap_or_default();
    let resource = &case["resource"];
    let got = match route(resource).and_then(|class| Ok((class, clinical_time_ms(resource)?))) {
        Ok((class, time)) => serde_json::json!({"class": class, "clinical_time": time}),
        Err(err) => serde_json::json!({"error": err.kind()}),
    };
    report.expect_eq(name, got, case["expect"].clone());
    Ok(())
}

/// `grant`, `patient`, `recorded_at` → `expect`: the exported Consent, exactly.
fn check_consent(case: &Value, report: &mut VectorReport) -> Result<(), String> {
    let name = case["name"].as_str().unwrap_or_default();
    let grant = read_grant(&case["grant"])?;
    let patient = case["patient"].as_str().and_then(UserId::parse).ok_or("bad `patient`")?;
    let at = case["recorded_at"].as_u64().ok_or("no `recorded_at`")?;
    report.expect_eq(name, to_consent(&grant, &patient, at), case["expect"].clone());
    Ok(())
}
