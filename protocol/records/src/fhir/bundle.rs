//! Resources in and out in bulk: a Bundle of any type or NDJSON split into resources, and
//! the `collection` Bundle a record exports.

use serde_json::{Value, json};

use crate::error::Error;
use crate::fhir::datetime::format_instant;

/// How deep Bundles may nest inside Bundles (a collection of documents is two levels).
const MAX_BUNDLE_DEPTH: usize = 8;

/// The resources of `text`: one JSON resource, a Bundle (of any type: its entries'
/// resources, Bundles within it split too, entries without a resource such as a transaction's
/// deletes skipped), or NDJSON (one resource or Bundle per line, blank lines ignored).
pub fn parse_resources(text: &str) -> Result<Vec<Value>, Error> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return split(value, "input");
    }
    let mut resources = Vec::new();
    let mut seen_any = false;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        seen_any = true;
        let location = format!("line {}", index + 1);
        let value: Value = serde_json::from_str(line)
            .map_err(|err| Error::fhir(&location, format!("is not JSON ({err})")))?;
        resources.extend(split(value, &location)?);
    }
    if !seen_any {
        return Err(Error::fhir("input", "is empty: no FHIR resource in it"));
    }
    Ok(resources)
}

/// The resources of one JSON value: itself, or a Bundle's entries' resources, recursively.
pub fn split(value: Value, location: &str) -> Result<Vec<Value>, Error> {
    let mut resources = Vec::new();
    split_into(value, location, 0, &mut resources)?;
    Ok(resources)
}

fn split_into(
    value: Value,
    location: &str,
    depth: usize,
    out: &mut Vec<Value>,
) -> Result<(), Error> {
    let resource_type = value.get("resourceType").and_then(Value::as_str);
    match resource_type {
        None => Err(Error::fhir(location, "is not a FHIR resource (no resourceType)")),
        Some("Bundle") => {
            if depth >= MAX_BUNDLE_DEPTH {
                return Err(Error::fhir(location, "nests Bundles more than 8 deep"));
            }
            let Value::Object(mut bundle) = value else { unreachable!("has a resourceType") };
            let entries = match bundle.remove("entry") {
                None => Vec::new(),
                Some(Value::Array(entries)) => entries,
                Some(_) => return Err(Error::fhir(location, "has an entry that is not a list")),
            };
            for (index, mut entry) in entries.into_iter().enumerate() {
                if let Some(resource) = entry.get_mut("resource").map(Value::take) {
                    let inner = format!("{location}, Bundle.entry[{index}]");
                    split_into(resource, &inner, depth + 1, out)?;
                }
            }
            Ok(())
        }
        Some(_) => {
            out.push(value);
            Ok(())
        }
    }
}

/// The `collection` Bundle of `resources`, unchanged, stamped with the moment of export.
/// Entries carry no `fullUrl`: a collection needs none, and inventing one would change what
/// another record imports.
pub fn collection_bundle(resources: &[Value], exported_at_ms: u64) -> Value {
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": resources.iter().map(|resource| json!({"resource": resource})).collect::<Vec<_>>(),
    });
    // A moment past year 9999 has no FHIR instant; the timestamp is optional.
    if let Some(timestamp) = i64::try_from(exported_at_ms).ok().and_then(format_instant) {
        bundle["timestamp"] = timestamp.into();
    }
    bundle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_of_any_type_split_into_their_resources() {
        let text = r#"{"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Observation", "id": "a"}},
            {"request": {"method": "DELETE", "url": "Observation/x"}},
            {"resource": {"resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": {"resourceType": "Condition", "id": "b"}}]}}]}"#;
        let resources = parse_resources(text).unwrap();
        let ids: Vec<_> = resources.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn ndjson_splits_by_line_and_names_the_bad_line() {
        let text = "{\"resourceType\":\"Observation\"}\n\n{\"resourceType\":\"Condition\"}\n";
        assert_eq!(parse_resources(text).unwrap().len(), 2);
        let err = parse_resources("{\"resourceType\":\"Observation\"}\nnot json\n").unwrap_err();
        assert!(err.to_string().starts_with("line 2: is not JSON"), "{err}");
        let err = parse_resources("{\"id\": 1}").unwrap_err();
        assert!(err.to_string().contains("no resourceType"), "{err}");
        assert!(parse_resources("  \n").is_err());
    }

    #[test]
    fn a_collection_keeps_resources_unchanged() {
        let resources = vec![json!({"resourceType": "Observation", "id": "a", "status": "final"})];
        let bundle = collection_bundle(&resources, 0);
        assert_eq!(bundle["type"], "collection");
        assert_eq!(bundle["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(split(bundle, "export").unwrap(), resources);
    }
}
