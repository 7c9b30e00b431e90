//! CSV with a column mapping (spec/devices.md, "Other sources: CSV"): each row becomes Open
//! mHealth bodies (`--column time=Date --column heart_rate=HR:beats/min`), which then take
//! the Open mHealth path into Observations. The `csv` crate reads the file (quoting and
//! escapes as RFC 4180 has them), row by row, so a large file stays out of memory.

use serde_json::{Map, Value, json};

/// The measures a column may hold: Open mHealth body keys.
const MEASURES: &[&str] = &[
    "heart_rate",
    "systolic_blood_pressure",
    "diastolic_blood_pressure",
    "body_weight",
    "oxygen_saturation",
    "body_temperature",
    "blood_glucose",
    "step_count",
];

/// One `--column KEY=COLUMN[:UNIT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub key: String,
    pub header: String,
    pub unit: Option<String>,
}

/// `time=Date`, `heart_rate=HR:beats/min`.
pub fn parse_column(text: &str) -> Result<Column, String> {
    let (key, rest) =
        text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=COLUMN[:UNIT]"))?;
    let (header, unit) = match rest.rsplit_once(':') {
        Some((header, unit)) if key != "time" => (header, Some(unit.to_owned())),
        _ => (rest, None),
    };
    if key != "time" && !MEASURES.contains(&key) {
        return Err(format!("`{key}` is neither `time` nor a measure ({})", MEASURES.join(", ")));
    }
    if key != "time" && key != "step_count" && unit.is_none() {
        return Err(format!("`{key}` needs its unit: {key}={header}:UNIT"));
    }
    Ok(Column { key: key.to_owned(), header: header.to_owned(), unit })
}

/// The mapping, checked against the file's header row: where each column is.
pub struct Mapping {
    time: usize,
    measures: Vec<(Column, usize)>,
}

impl Mapping {
    pub fn new(columns: &[Column], headers: &csv::StringRecord) -> Result<Mapping, String> {
        let position = |column: &Column| {
            headers.iter().position(|header| header.trim() == column.header).ok_or_else(|| {
                format!("the file has no column `{}` (its columns: {})", column.header, {
                    let names: Vec<&str> = headers.iter().collect();
                    names.join(", ")
                })
            })
        };
        let time = columns
            .iter()
            .find(|column| column.key == "time")
            .ok_or("--column time=COLUMN is needed: which column says when")?;
        let measures: Vec<(Column, usize)> = columns
            .iter()
            .filter(|column| column.key != "time")
            .map(|column| Ok((column.clone(), position(column)?)))
            .collect::<Result<_, String>>()?;
        if measures.is_empty() {
            return Err("no --column maps a measure".to_owned());
        }
        Ok(Mapping { time: position(time)?, measures })
    }

    /// The Open mHealth bodies of one row: one per measure with a value (systolic and
    /// diastolic together as one blood pressure); empty cells are no reading.
    pub fn bodies(&self, row: &csv::StringRecord) -> Result<Vec<Value>, String> {
        let time = row.get(self.time).map(str::trim).unwrap_or_default();
        if time.is_empty() {
            return Err("the time cell is empty".to_owned());
        }
        let frame = json!({"date_time": time});
        let mut pressure = Map::new();
        let mut bodies = Vec::new();
        for (column, index) in &self.measures {
            let cell = row.get(*index).map(str::trim).unwrap_or_default();
            if cell.is_empty() {
                continue;
            }
            let value: serde_json::Number = serde_json::from_str(cell)
                .map_err(|_| format!("`{cell}` in column `{}` is not a number", column.header))?;
            let measure = match &column.unit {
                Some(unit) => json!({"value": value, "unit": unit}),
                None => json!(value),
            };
            if column.key.ends_with("_blood_pressure") {
                pressure.insert(column.key.clone(), measure);
                continue;
            }
            bodies.push(json!({column.key.clone(): measure, "effective_time_frame": frame}));
        }
        if !pressure.is_empty() {
            pressure.insert("effective_time_frame".to_owned(), frame);
            bodies.push(Value::Object(pressure));
        }
        Ok(bodies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(columns: &[&str], headers: &[&str]) -> Result<Mapping, String> {
        let columns: Vec<Column> = columns.iter().map(|c| parse_column(c).unwrap()).collect();
        Mapping::new(&columns, &csv::StringRecord::from(headers.to_vec()))
    }

    #[test]
    fn a_row_becomes_one_body_per_measure_and_one_blood_pressure() {
        let map = mapping(
            &[
                "time=When",
                "heart_rate=Pulse:beats/min",
                "systolic_blood_pressure=Sys:mmHg",
                "diastolic_blood_pressure=Dia:mmHg",
            ],
            &["When", "Sys", "Dia", "Pulse", "Note"],
        )
        .unwrap();
        let row =
            csv::StringRecord::from(vec!["2024-03-05T07:30:00Z", "120", "80", "", "fine, thanks"]);
        let bodies = map.bodies(&row).unwrap();
        assert_eq!(bodies.len(), 1, "no pulse given: {bodies:?}");
        assert_eq!(bodies[0]["systolic_blood_pressure"], json!({"value": 120, "unit": "mmHg"}));
        assert_eq!(bodies[0]["effective_time_frame"]["date_time"], "2024-03-05T07:30:00Z");
        let row = csv::StringRecord::from(vec!["2024-03-05T07:31:00Z", "", "", "72", ""]);
        assert_eq!(map.bodies(&row).unwrap()[0]["heart_rate"]["value"], 72);
        let bad = csv::StringRecord::from(vec!["2024-03-05T07:31:00Z", "high", "", "", ""]);
        assert!(map.bodies(&bad).unwrap_err().contains("`high`"));
    }

    #[test]
    fn a_mapping_says_what_is_wrong_with_it() {
        assert!(parse_column("pulse").unwrap_err().contains("KEY=COLUMN"));
        assert!(parse_column("mood=Mood:smiles").unwrap_err().contains("`mood`"));
        assert!(parse_column("heart_rate=HR").unwrap_err().contains("unit"));
        assert_eq!(parse_column("step_count=Steps").unwrap().unit, None);
        assert!(mapping(&["heart_rate=HR:beats/min"], &["HR"]).err().unwrap().contains("time"));
        assert!(
            mapping(&["time=T", "heart_rate=HR:beats/min"], &["T"])
                .err()
                .unwrap()
                .contains("no column `HR`")
        );
    }
}
