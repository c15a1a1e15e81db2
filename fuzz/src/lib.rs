//! Shared code of Ward's fuzz targets (see `docs/fuzzing.md`):
//! - [`json_round_trip`], the oracle of the JSON decoders;
//! - [`fixture`], the small MLS group that `mls_process` restores and `gen_seeds` writes.

pub mod fixture;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `data` as JSON `T`. When it decodes, the value must encode, decode again and encode
/// to the same JSON: whatever a peer can make us accept we can store, echo and re-read.
pub fn json_round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let name = std::any::type_name::<T>();
    let first = serde_json::to_vec(&value)
        .unwrap_or_else(|e| panic!("a decoded {name} does not encode: {e}"));
    let again: T = serde_json::from_slice(&first)
        .unwrap_or_else(|e| panic!("an encoded {name} does not decode: {e}"));
    let second = serde_json::to_vec(&again)
        .unwrap_or_else(|e| panic!("a re-decoded {name} does not encode: {e}"));
    assert!(first == second, "{name}: JSON round trip is not stable");
    Some(value)
}
