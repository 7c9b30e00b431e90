//! Properties over every characteristic: any reading encodes and decodes back to itself; no
//! bytes make a decoder panic; whatever decodes re-encodes to the same fields; every JSON
//! written is valid; every number is written as exactly its mantissa × 10^exponent.

use medrix_devices::blood_pressure::PressureUnit;
use medrix_devices::cgm::CgmRecord;
use medrix_devices::glucose::{Concentration, ConcentrationUnit};
use medrix_devices::heart_rate::{HeartRate, SensorContact};
use medrix_devices::pulse_oximetry::{Spo2Pr, Statuses};
use medrix_devices::temperature::TemperatureUnit;
use medrix_devices::weight::{BmiAndHeight, WeightUnits};
use medrix_devices::{
    BloodPressureMeasurement, CgmMeasurement, Characteristic, DateTime, Decimal, Float,
    GlucoseMeasurement, HeartRateMeasurement, Medfloat, PlxContinuousMeasurement,
    PlxSpotCheckMeasurement, Reading, Sfloat, TemperatureMeasurement, WeightMeasurement, decode,
};
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

fn sfloat() -> impl Strategy<Value = Sfloat> {
    any::<u16>().prop_map(Sfloat)
}

fn date_time() -> impl Strategy<Value = DateTime> {
    (prop_oneof![Just(0u16), 1582u16..=9999], 0u8..=12, 0u8..=31, 0u8..=23, 0u8..=59, 0u8..=59)
        .prop_map(|(year, month, day, hours, minutes, seconds)| {
            DateTime::new(year, month, day, hours, minutes, seconds).unwrap()
        })
}

fn heart_rate() -> impl Strategy<Value = Reading> {
    let value = prop_oneof![
        any::<u8>().prop_map(HeartRate::Uint8),
        any::<u16>().prop_map(HeartRate::Uint16)
    ];
    let contact = prop_oneof![
        Just(SensorContact::NotSupported),
        Just(SensorContact::NotDetected),
        Just(SensorContact::Detected)
    ];
    (value, contact, of(any::<u16>()), vec(any::<u16>(), 0..10)).prop_map(
        |(heart_rate, sensor_contact, energy_expended_kj, rr_intervals)| {
            Reading::HeartRate(HeartRateMeasurement {
                heart_rate,
                sensor_contact,
                energy_expended_kj,
                rr_intervals,
            })
        },
    )
}

fn blood_pressure() -> impl Strategy<Value = Reading> {
    let unit = prop_oneof![Just(PressureUnit::MmHg), Just(PressureUnit::KPa)];
    let pressures = (sfloat(), sfloat(), sfloat());
    let optional = (of(date_time()), of(sfloat()), of(any::<u8>()), of(any::<u16>()));
    (unit, pressures, optional).prop_map(
        |(unit, (systolic, diastolic, mean_arterial_pressure), (stamp, pulse, user, status))| {
            Reading::BloodPressure(BloodPressureMeasurement {
                unit,
                systolic,
                diastolic,
                mean_arterial_pressure,
                time_stamp: stamp,
                pulse_rate: pulse,
                user_id: user,
                measurement_status: status,
            })
        },
    )
}

fn temperature() -> impl Strategy<Value = Reading> {
    let unit = prop_oneof![Just(TemperatureUnit::Celsius), Just(TemperatureUnit::Fahrenheit)];
    (unit, any::<u32>(), of(date_time()), of(any::<u8>())).prop_map(
        |(unit, bits, time_stamp, temperature_type)| {
            Reading::Temperature(TemperatureMeasurement {
                unit,
                temperature: Float(bits),
                time_stamp,
                temperature_type,
            })
        },
    )
}

fn weight() -> impl Strategy<Value = Reading> {
    let units = prop_oneof![Just(WeightUnits::Si), Just(WeightUnits::Imperial)];
    let bmi_and_height = of((any::<u16>(), any::<u16>()))
        .prop_map(|both| both.map(|(bmi, height)| BmiAndHeight { bmi, height }));
    (units, any::<u16>(), of(date_time()), of(any::<u8>()), bmi_and_height).prop_map(
        |(units, weight, time_stamp, user_id, bmi_and_height)| {
            Reading::Weight(WeightMeasurement {
                units,
                weight,
                time_stamp,
                user_id,
                bmi_and_height,
            })
        },
    )
}

fn glucose() -> impl Strategy<Value = Reading> {
    let unit = prop_oneof![Just(ConcentrationUnit::KgPerL), Just(ConcentrationUnit::MolPerL)];
    let concentration = of((sfloat(), unit, 0u8..16, 0u8..16)).prop_map(|concentration| {
        concentration.map(|(value, unit, glucose_type, sample_location)| Concentration {
            value,
            unit,
            glucose_type,
            sample_location,
        })
    });
    (any::<u16>(), date_time(), of(any::<i16>()), concentration, of(any::<u16>()), any::<bool>())
        .prop_map(|(sequence_number, base_time, offset, concentration, status, follows)| {
            Reading::Glucose(GlucoseMeasurement {
                sequence_number,
                base_time,
                time_offset_minutes: offset,
                concentration,
                sensor_status: status,
                context_information_follows: follows,
            })
        })
}

fn spo2_pr() -> impl Strategy<Value = Spo2Pr> {
    (sfloat(), sfloat()).prop_map(|(spo2, pulse_rate)| Spo2Pr { spo2, pulse_rate })
}

fn statuses() -> impl Strategy<Value = Statuses> {
    (of(any::<u16>()), of(0u32..1 << 24), of(sfloat())).prop_map(|(status, device, index)| {
        Statuses {
            measurement_status: status,
            device_and_sensor_status: device,
            pulse_amplitude_index: index,
        }
    })
}

fn plx_spot_check() -> impl Strategy<Value = Reading> {
    (spo2_pr(), of(date_time()), statuses(), any::<bool>()).prop_map(
        |(reading, time_stamp, statuses, device_clock_not_set)| {
            Reading::PlxSpotCheck(PlxSpotCheckMeasurement {
                reading,
                time_stamp,
                statuses,
                device_clock_not_set,
            })
        },
    )
}

fn plx_continuous() -> impl Strategy<Value = Reading> {
    (spo2_pr(), of(spo2_pr()), of(spo2_pr()), statuses()).prop_map(
        |(normal, fast, slow, statuses)| {
            Reading::PlxContinuous(PlxContinuousMeasurement { normal, fast, slow, statuses })
        },
    )
}

fn cgm() -> impl Strategy<Value = Reading> {
    let octets = (of(any::<u8>()), of(any::<u8>()), of(any::<u8>()));
    let record = (sfloat(), any::<u16>(), octets, of(sfloat()), of(sfloat()), any::<bool>())
        .prop_map(|(concentration, offset, (status, cal_temp, warning), trend, quality, crc)| {
            CgmRecord {
                glucose_concentration: concentration,
                time_offset_minutes: offset,
                status_octet: status,
                cal_temp_octet: cal_temp,
                warning_octet: warning,
                trend_information: trend,
                quality,
                e2e_crc: crc,
            }
        });
    vec(record, 1..5).prop_map(|records| Reading::Cgm(CgmMeasurement { records }))
}

fn any_reading() -> impl Strategy<Value = Reading> {
    prop_oneof![
        heart_rate(),
        blood_pressure(),
        temperature(),
        weight(),
        glucose(),
        plx_spot_check(),
        plx_continuous(),
        cgm(),
    ]
}

fn characteristic() -> impl Strategy<Value = Characteristic> {
    proptest::sample::select(Characteristic::ALL.to_vec())
}

/// Bytes shaped like a value: a real encoding, cut, extended or with one octet changed, so
/// the decoders' later fields are reached and not only their flags.
fn near_valid_payload() -> impl Strategy<Value = (Characteristic, Vec<u8>)> {
    (any_reading(), any::<usize>(), any::<u8>(), 0usize..4).prop_map(|(reading, at, octet, how)| {
        let mut bytes = reading.encode();
        let at = at % (bytes.len() + 1);
        match how {
            0 => bytes.truncate(at),
            1 => bytes.insert(at, octet),
            2 if at < bytes.len() => bytes[at] = octet,
            _ => bytes.push(octet),
        }
        (reading.characteristic(), bytes)
    })
}

/// What a decoded payload must satisfy: valid JSON, and a re-encoding that decodes to the
/// same reading and has as many octets (only ignored flag bits may differ).
fn check_decoded(characteristic: Characteristic, payload: &[u8]) -> Result<(), TestCaseError> {
    let Ok(reading) = decode(characteristic, payload) else { return Ok(()) };
    let json = reading.to_json();
    prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{}", json);
    let encoded = reading.encode();
    prop_assert_eq!(encoded.len(), payload.len());
    prop_assert_eq!(decode(characteristic, &encoded), Ok(reading));
    Ok(())
}

/// Checks that `text` is exactly `mantissa × 10^exponent`, digit for digit.
fn assert_exact(decimal: Decimal, text: &str) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let scale = fraction.len() as i32;
    let exponent = i32::from(decimal.exponent());
    if exponent < 0 {
        assert_eq!(scale, -exponent, "{text}");
        let digits: i128 = format!("{whole}{fraction}").parse().unwrap();
        let digits = if negative { -digits } else { digits };
        assert_eq!(digits, i128::from(decimal.mantissa()), "{text}");
        assert!(whole.len() == 1 || !whole.starts_with('0'), "{text}");
    } else if decimal.mantissa() != 0 {
        assert_eq!(scale, 0, "{text}");
        let zeros = "0".repeat(exponent as usize);
        assert_eq!(unsigned, format!("{}{zeros}", decimal.mantissa().unsigned_abs()));
        assert_eq!(negative, decimal.mantissa() < 0, "{text}");
    } else {
        assert_eq!(text, "0");
    }
}

#[test]
fn every_sfloat_prints_as_exactly_its_value_and_as_a_json_number() {
    for bits in 0..=u16::MAX {
        match Sfloat(bits).value() {
            Medfloat::Number(decimal) => {
                let text = decimal.to_string();
                assert_exact(decimal, &text);
                let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert!(parsed.is_number(), "{text}");
            }
            special => assert!(special.special_name().is_some()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_float_prints_as_exactly_its_value(bits in any::<u32>()) {
        if let Medfloat::Number(decimal) = Float(bits).value() {
            let text = decimal.to_string();
            assert_exact(decimal, &text);
            prop_assert!(serde_json::from_str::<serde_json::Value>(&text).unwrap().is_number());
        }
        prop_assert_eq!(Float::from_value(Float(bits).value()), Some(Float(bits)));
    }

    #[test]
    fn every_reading_encodes_and_decodes_back_to_itself(reading in any_reading()) {
        let bytes = reading.encode();
        prop_assert_eq!(decode(reading.characteristic(), &bytes), Ok(reading.clone()));
        let json = reading.to_json();
        prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{}", json);
    }

    #[test]
    fn no_bytes_make_a_decoder_panic(characteristic in characteristic(), payload in vec(any::<u8>(), 0..48)) {
        check_decoded(characteristic, &payload)?;
    }

    #[test]
    fn no_near_valid_bytes_make_a_decoder_panic((characteristic, payload) in near_valid_payload()) {
        check_decoded(characteristic, &payload)?;
    }
}
