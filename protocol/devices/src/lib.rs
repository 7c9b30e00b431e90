//! Exact decoders for the Bluetooth GATT characteristics health devices send: heart rate,
//! blood pressure, temperature, weight, glucose, pulse oximetry and continuous glucose.
//!
//! Pure functions, no I/O and no clock: bytes in, a typed reading (or a one-line reason)
//! out, and the reading as one JSON object. Every flag bit of a characteristic is honoured; a
//! value that lacks a field its flags promise, or has bytes after its last field, is refused;
//! no payload makes a decoder panic. IEEE 11073 SFLOAT and FLOAT numbers stay exact decimals
//! with the device's precision, and their special values (NaN, NRes, ±INF, reserved) stay
//! distinct. Field layouts and JSON keys are in `spec/devices.md`.

pub mod date_time;
pub mod decimal;
pub mod error;
mod json;
pub mod medfloat;
mod wire;

pub use date_time::DateTime;
pub use decimal::Decimal;
pub use error::DecodeError;
pub use json::string as json_string;
pub use medfloat::{Float, Medfloat, Sfloat};
