//! The profile's state blob (`Client::to_bytes`): a corrupt or hostile blob must give an
//! error, never a panic or a huge allocation. A blob that restores must serialise again, and
//! that serialisation must restore to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_core::Client;

fuzz_target!(|data: &[u8]| {
    let Ok(client) = Client::from_bytes(data) else {
        return;
    };
    let bytes = client.to_bytes().expect("a restored client serialises");
    let again = Client::from_bytes(&bytes).expect("a client's own state restores");
    assert_eq!(again.device_id(), client.device_id());
    let bytes_again = again.to_bytes().expect("a restored client serialises");
    // Compare without printing: the bytes hold secret keys.
    assert!(*bytes == *bytes_again, "state encoding is not stable");
});
