//! Exact decoders for the Bluetooth GATT characteristics health devices send: heart rate,
//! blood pressure, temperature, weight, glucose, pulse oximetry and continuous glucose.
//!
//! Pure functions, no I/O and no clock: bytes in, a typed reading (or a one-line reason)
//! out, and the reading as one JSON object. Every flag bit of a characteristic is honoured; a
//! value that lacks a field its flags promise, or has bytes after its last field, is refused;
//! no payload makes a decoder panic. IEEE 11073 SFLOAT and FLOAT numbers stay exact decimals
//! with the device's precision, and their special values (NaN, NRes, ±INF, reserved) stay
//! distinct. Field layouts and JSON keys are in `spec/devices.md`. `fhir` maps readings to
//! FHIR R4 Observations.

pub mod alerts;
pub mod blood_pressure;
pub mod cgm;
pub mod date_time;
pub mod decimal;
pub mod error;
pub mod fhir;
pub mod glucose;
pub mod heart_rate;
mod json;
pub mod medfloat;
pub mod omh;
pub mod pulse_oximetry;
pub mod sampled;
pub mod temperature;
pub mod weight;
mod wire;

pub use blood_pressure::BloodPressureMeasurement;
pub use cgm::CgmMeasurement;
pub use date_time::DateTime;
pub use decimal::Decimal;
pub use error::DecodeError;
pub use glucose::GlucoseMeasurement;
pub use heart_rate::HeartRateMeasurement;
pub use json::string as json_string;
pub use medfloat::{Float, Medfloat, Sfloat};
pub use pulse_oximetry::{PlxContinuousMeasurement, PlxSpotCheckMeasurement};
pub use temperature::TemperatureMeasurement;
pub use weight::WeightMeasurement;

/// A characteristic this crate decodes, by its assigned 16-bit UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Characteristic {
    /// 0x2A37.
    HeartRateMeasurement,
    /// 0x2A35.
    BloodPressureMeasurement,
    /// 0x2A1C.
    TemperatureMeasurement,
    /// 0x2A9D.
    WeightMeasurement,
    /// 0x2A18.
    GlucoseMeasurement,
    /// 0x2A5E.
    PlxSpotCheckMeasurement,
    /// 0x2A5F.
    PlxContinuousMeasurement,
    /// 0x2AA7.
    CgmMeasurement,
}

impl Characteristic {
    /// Every characteristic this crate decodes.
    pub const ALL: [Characteristic; 8] = [
        Characteristic::HeartRateMeasurement,
        Characteristic::BloodPressureMeasurement,
        Characteristic::TemperatureMeasurement,
        Characteristic::WeightMeasurement,
        Characteristic::GlucoseMeasurement,
        Characteristic::PlxSpotCheckMeasurement,
        Characteristic::PlxContinuousMeasurement,
        Characteristic::CgmMeasurement,
    ];

    /// The assigned 16-bit UUID.
    pub fn uuid(self) -> u16 {
        match self {
            Characteristic::HeartRateMeasurement => 0x2A37,
            Characteristic::BloodPressureMeasurement => 0x2A35,
            Characteristic::TemperatureMeasurement => 0x2A1C,
            Characteristic::WeightMeasurement => 0x2A9D,
            Characteristic::GlucoseMeasurement => 0x2A18,
            Characteristic::PlxSpotCheckMeasurement => 0x2A5E,
            Characteristic::PlxContinuousMeasurement => 0x2A5F,
            Characteristic::CgmMeasurement => 0x2AA7,
        }
    }

    /// The characteristic with this UUID, if this crate decodes it.
    pub fn from_uuid(uuid: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|characteristic| characteristic.uuid() == uuid)
    }

    /// The name the Bluetooth SIG gives it.
    pub fn name(self) -> &'static str {
        match self {
            Characteristic::HeartRateMeasurement => "Heart Rate Measurement",
            Characteristic::BloodPressureMeasurement => "Blood Pressure Measurement",
            Characteristic::TemperatureMeasurement => "Temperature Measurement",
            Characteristic::WeightMeasurement => "Weight Measurement",
            Characteristic::GlucoseMeasurement => "Glucose Measurement",
            Characteristic::PlxSpotCheckMeasurement => "PLX Spot-Check Measurement",
            Characteristic::PlxContinuousMeasurement => "PLX Continuous Measurement",
            Characteristic::CgmMeasurement => "CGM Measurement",
        }
    }
}

/// A decoded value of one of the characteristics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// 0x2A37.
    HeartRate(HeartRateMeasurement),
    /// 0x2A35.
    BloodPressure(BloodPressureMeasurement),
    /// 0x2A1C.
    Temperature(TemperatureMeasurement),
    /// 0x2A9D.
    Weight(WeightMeasurement),
    /// 0x2A18.
    Glucose(GlucoseMeasurement),
    /// 0x2A5E.
    PlxSpotCheck(PlxSpotCheckMeasurement),
    /// 0x2A5F.
    PlxContinuous(PlxContinuousMeasurement),
    /// 0x2AA7.
    Cgm(CgmMeasurement),
}

/// Decodes a value of `characteristic`.
pub fn decode(characteristic: Characteristic, payload: &[u8]) -> Result<Reading, DecodeError> {
    Ok(match characteristic {
        Characteristic::HeartRateMeasurement => {
            Reading::HeartRate(HeartRateMeasurement::decode(payload)?)
        }
        Characteristic::BloodPressureMeasurement => {
            Reading::BloodPressure(BloodPressureMeasurement::decode(payload)?)
        }
        Characteristic::TemperatureMeasurement => {
            Reading::Temperature(TemperatureMeasurement::decode(payload)?)
        }
        Characteristic::WeightMeasurement => Reading::Weight(WeightMeasurement::decode(payload)?),
        Characteristic::GlucoseMeasurement => {
            Reading::Glucose(GlucoseMeasurement::decode(payload)?)
        }
        Characteristic::PlxSpotCheckMeasurement => {
            Reading::PlxSpotCheck(PlxSpotCheckMeasurement::decode(payload)?)
        }
        Characteristic::PlxContinuousMeasurement => {
            Reading::PlxContinuous(PlxContinuousMeasurement::decode(payload)?)
        }
        Characteristic::CgmMeasurement => Reading::Cgm(CgmMeasurement::decode(payload)?),
    })
}

impl Reading {
    /// The characteristic this is a value of.
    pub fn characteristic(&self) -> Characteristic {
        match self {
            Reading::HeartRate(_) => Characteristic::HeartRateMeasurement,
            Reading::BloodPressure(_) => Characteristic::BloodPressureMeasurement,
            Reading::Temperature(_) => Characteristic::TemperatureMeasurement,
            Reading::Weight(_) => Characteristic::WeightMeasurement,
            Reading::Glucose(_) => Characteristic::GlucoseMeasurement,
            Reading::PlxSpotCheck(_) => Characteristic::PlxSpotCheckMeasurement,
            Reading::PlxContinuous(_) => Characteristic::PlxContinuousMeasurement,
            Reading::Cgm(_) => Characteristic::CgmMeasurement,
        }
    }

    /// The value as a device sends it (reserved flag bits clear).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reading::HeartRate(reading) => reading.encode(),
            Reading::BloodPressure(reading) => reading.encode(),
            Reading::Temperature(reading) => reading.encode(),
            Reading::Weight(reading) => reading.encode(),
            Reading::Glucose(reading) => reading.encode(),
            Reading::PlxSpotCheck(reading) => reading.encode(),
            Reading::PlxContinuous(reading) => reading.encode(),
            Reading::Cgm(reading) => reading.encode(),
        }
    }

    /// The reading as one JSON object whose numbers are the exact decimals received.
    pub fn to_json(&self) -> String {
        match self {
            Reading::HeartRate(reading) => reading.to_json(),
            Reading::BloodPressure(reading) => reading.to_json(),
            Reading::Temperature(reading) => reading.to_json(),
            Reading::Weight(reading) => reading.to_json(),
            Reading::Glucose(reading) => reading.to_json(),
            Reading::PlxSpotCheck(reading) => reading.to_json(),
            Reading::PlxContinuous(reading) => reading.to_json(),
            Reading::Cgm(reading) => reading.to_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Characteristic;

    #[test]
    fn uuids_map_both_ways() {
        for characteristic in Characteristic::ALL {
            assert_eq!(Characteristic::from_uuid(characteristic.uuid()), Some(characteristic));
        }
        assert_eq!(Characteristic::from_uuid(0x2A00), None);
    }
}
