//! The record's shape in Matrix: a space owned by the patient, with one encrypted room per
//! data class. Both carry an `org.medrix.record` state event (state key `""`): in a class room
//! it names the patient, the class and the space; in the space, the patient and the rooms of
//! every class.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::class::DataClass;
use crate::error::Error;
use crate::ids::{RoomId, UserId};
use crate::json::Object;

/// The event type of the record state, in the space and in every class room.
pub const RECORD_EVENT_TYPE: &str = "org.medrix.record";

/// The state key of the record state.
pub const RECORD_STATE_KEY: &str = "";

/// The record state of a class room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRoom {
    /// Whose record it is.
    pub patient: UserId,
    /// The one class of data this room keeps.
    pub class: DataClass,
    /// The record space the room belongs to.
    pub space: RoomId,
    /// For a device's own room: the device account (a bot of the patient's server) that
    /// alone sends entries here, so no reader's room keys ever reach it.
    pub device: Option<UserId>,
}

/// The record state of the record space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpace {
    /// Whose record it is.
    pub patient: UserId,
    /// The rooms of each class. A class may have several rooms (a device's own room beside
    /// the patient's, or rooms per period), and a class not yet used has none.
    pub classes: BTreeMap<DataClass, Vec<RoomId>>,
}

impl RecordRoom {
    /// Parses the record state of a class room.
    pub fn from_content(content: &Value) -> Result<RecordRoom, Error> {
        let object = Object::root(content, "content")?;
        let (patient, class, space) =
            (object.string("patient")?, object.string("class")?, object.string("space")?);
        Ok(RecordRoom {
            patient: parse_user(patient, "patient")?,
            class: DataClass::parse(class).ok_or_else(|| {
                Error::value("class", format!("names `{class}`, which is not a record class"))
            })?,
            space: RoomId::parse(space)
                .ok_or_else(|| Error::value("space", "must be a Matrix room ID"))?,
            device: match object.optional_string("device")? {
                Some(device) => Some(parse_user(device, "device")?),
                None => None,
            },
        })
    }

    /// The event content.
    pub fn to_content(&self) -> Value {
        let mut content =
            json!({"patient": self.patient, "class": self.class, "space": self.space});
        if let Some(device) = &self.device {
            content["device"] = json!(device);
        }
        content
    }
}

impl RecordSpace {
    /// Parses the record state of a record space.
    pub fn from_content(content: &Value) -> Result<RecordSpace, Error> {
        let object = Object::root(content, "content")?;
        let patient = object.string("patient")?;
        let rooms = object.object("classes")?;
        // Read every list's shape before judging any value.
        let mut raw = Vec::new();
        for class in DataClass::ALL {
            if rooms.has(class.as_str()) {
                raw.push((class, rooms.strings(class.as_str())?));
            }
        }
        let patient = parse_user(patient, "patient")?;
        let listed = content["classes"].as_object().map_or(0, |map| map.len());
        if listed != raw.len() {
            return Err(Error::value("classes", "names a class that is not a record class"));
        }
        let mut classes = BTreeMap::new();
        for (class, ids) in raw {
            let ids = ids
                .into_iter()
                .map(|id| {
                    RoomId::parse(id).ok_or_else(|| {
                        Error::value(format!("classes.{class}"), "must list Matrix room IDs")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            classes.insert(class, ids);
        }
        Ok(RecordSpace { patient, classes })
    }

    /// The event content.
    pub fn to_content(&self) -> Value {
        json!({"patient": self.patient, "classes": self.classes
            .iter()
            .map(|(class, rooms)| (class.as_str().to_owned(), json!(rooms)))
            .collect::<serde_json::Map<_, _>>()})
    }

    /// The class of a room of this record, if the space lists it.
    pub fn class_of(&self, room: &RoomId) -> Option<DataClass> {
        self.classes.iter().find(|(_, rooms)| rooms.contains(room)).map(|(class, _)| *class)
    }
}

fn parse_user(text: &str, field: &str) -> Result<UserId, Error> {
    UserId::parse(text).ok_or_else(|| Error::value(field, "must be a Matrix user ID"))
}
