//! How values are laid out in the store: one format-version byte, then JSON.
//!
//! The version byte lets a later release change a value's layout (sealing it, say) and still
//! read what an earlier release wrote.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// The layout this release writes: JSON after the version byte.
pub const FORMAT_JSON_V1: u8 = 1;

/// Room for a typical message: growing from one byte took eight reallocations per event.
const ENCODE_CAPACITY: usize = 1024;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(ENCODE_CAPACITY);
    out.push(FORMAT_JSON_V1);
    serde_json::to_writer(&mut out, value).map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(out)
}

/// A JSON array of values encoded already, joined without decoding them again: a room's log
/// writes its events so, each encoded once when it was appended (see `rooms::stored`).
pub fn encode_array<'a>(
    encoded: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(ENCODE_CAPACITY);
    out.extend_from_slice(&[FORMAT_JSON_V1, b'[']);
    for (i, value) in encoded.into_iter().enumerate() {
        let Some((&FORMAT_JSON_V1, json)) = value.split_first() else {
            return Err(StoreError::Backend(
                "an array's item is not a JSON value of this release".into(),
            ));
        };
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(json);
    }
    out.push(b']');
    Ok(out)
}

/// Whether an encoded value is a JSON array (and not, say, one object).
pub fn is_array(bytes: &[u8]) -> bool {
    matches!(bytes, [FORMAT_JSON_V1, b'[', ..])
}

pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT_JSON_V1, json)) => {
            serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!("unknown value format {v}"))),
        None => Err(corrupt("empty value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refuse_unknown_formats() {
        let bytes = encode(&vec![1u32, 2]).expect("encode");
        assert_eq!(bytes[0], FORMAT_JSON_V1);
        assert_eq!(
            decode::<Vec<u32>>(b"k", &bytes).expect("decode"),
            vec![1, 2]
        );
        assert!(decode::<Vec<u32>>(b"k", &[9, b'[', b']']).is_err());
        assert!(decode::<Vec<u32>>(b"k", &[]).is_err());
    }

    #[test]
    fn an_array_of_encoded_values_decodes_as_their_list() {
        let items: Vec<Vec<u8>> = ["a", "b\"c"]
            .iter()
            .map(|s| encode(s).expect("encode"))
            .collect();
        let array = encode_array(items.iter().map(Vec::as_slice)).expect("array");
        assert!(is_array(&array));
        assert!(!is_array(&items[0]));
        assert_eq!(
            decode::<Vec<String>>(b"k", &array).expect("decode"),
            ["a", "b\"c"]
        );
        assert_eq!(
            decode::<Vec<String>>(b"k", &encode_array([]).expect("empty")).expect("decode"),
            Vec::<String>::new()
        );
        assert!(
            encode_array([&[9u8, b'1'][..]]).is_err(),
            "an unknown format"
        );
    }
}
