//! A record entry, `org.medrix.entry`: sent encrypted in a class room; its decrypted content
//! is a FHIR R4 resource with where it came from. A correction is a new entry that replaces an
//! earlier one through Matrix's `m.replace` relation; nothing is edited in place, so the
//! original stays in the DAG for the audit trail.

use serde_json::{Map, Value, json};

use crate::class::DataClass;
use crate::error::Error;
use crate::ids::{EventId, UserId};
use crate::json::Object;

/// The event type of a record entry (its decrypted type; on the wire it is `m.room.encrypted`).
pub const ENTRY_EVENT_TYPE: &str = "org.medrix.entry";

/// Who an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// The patient entered it.
    Patient,
    /// A provider (a grantee with a `contribute` contract) added it.
    Provider,
    /// A device's bot account recorded it.
    Device,
}

impl SourceKind {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Patient => "patient",
            SourceKind::Provider => "provider",
            SourceKind::Device => "device",
        }
    }

    /// The kind a wire string names.
    pub fn parse(wire: &str) -> Option<SourceKind> {
        [SourceKind::Patient, SourceKind::Provider, SourceKind::Device]
            .into_iter()
            .find(|kind| kind.as_str() == wire)
    }
}

/// Where an entry comes from: the kind and the Matrix user ID of the author (for a device,
/// its bot account: every device has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Patient, provider or device.
    pub kind: SourceKind,
    /// The author's user ID.
    pub id: UserId,
}

/// The decrypted content of an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The class of the room it belongs in.
    pub class: DataClass,
    /// The FHIR R4 resource, as given (an object with a string `resourceType`).
    pub resource: Map<String, Value>,
    /// Where it comes from.
    pub source: Source,
    /// The entry this one corrects, if it is a correction (`m.replace`).
    pub replaces: Option<EventId>,
}

impl Entry {
    /// Parses decrypted entry content. For a correction, the entry is read from
    /// `m.new_content`, as Matrix clients read replacements; the top-level fields are the
    /// fallback for clients that do not.
    pub fn from_content(content: &Value) -> Result<Entry, Error> {
        let object = Object::root(content, "content")?;
        let replaces = match object.optional_object("m.relates_to")? {
            Some(relation) if relation.string("rel_type")? == "m.replace" => {
                Some(relation.string("event_id")?)
            }
            _ => None,
        };
        let body = match replaces {
            Some(_) => object.object("m.new_content")?,
            None => object,
        };
        let class = body.string("class")?;
        let resource = body.object("resource")?;
        let resource_type = resource.string("resourceType")?;
        let source = body.object("source")?;
        let (kind, id) = (source.string("kind")?, source.string("id")?);
        let prefix = if replaces.is_some() { "m.new_content." } else { "" };
        let entry = Entry {
            class: DataClass::parse(class).ok_or_else(|| {
                Error::value(
                    format!("{prefix}class"),
                    format!("names `{class}`, which is not a record class"),
                )
            })?,
            resource: resource.map().clone(),
            source: Source {
                kind: SourceKind::parse(kind).ok_or_else(|| {
                    Error::value(
                        format!("{prefix}source.kind"),
                        "must be \"patient\", \"provider\" or \"device\"",
                    )
                })?,
                id: UserId::parse(id).ok_or_else(|| {
                    Error::value(format!("{prefix}source.id"), "must be a Matrix user ID")
                })?,
            },
            replaces: match replaces {
                Some(id) => Some(EventId::parse(id).ok_or_else(|| {
                    Error::value("m.relates_to.event_id", "must be a Matrix event ID")
                })?),
                None => None,
            },
        };
        if resource_type.is_empty() {
            return Err(Error::value(format!("{prefix}resource.resourceType"), "is empty"));
        }
        Ok(entry)
    }

    /// The decrypted event content. A correction carries the entry both at the top level and
    /// in `m.new_content`, with the `m.replace` relation.
    pub fn to_content(&self) -> Value {
        let body = json!({
            "class": self.class,
            "resource": self.resource,
            "source": {"kind": self.source.kind.as_str(), "id": self.source.id},
        });
        match &self.replaces {
            None => body,
            Some(original) => {
                let mut content = body.clone();
                content["m.new_content"] = body;
                content["m.relates_to"] = json!({"rel_type": "m.replace", "event_id": original});
                content
            }
        }
    }

    /// The resource's `resourceType`.
    pub fn resource_type(&self) -> &str {
        self.resource.get("resourceType").and_then(Value::as_str).unwrap_or_default()
    }
}
