//! WebSocket text frames from devices (`/v1/ws`): `ClientFrame` JSON must decode or fail,
//! never panic, and what decodes must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_proto::ClientFrame;

fuzz_target!(|data: &[u8]| {
    let _ = ward_fuzz::json_round_trip::<ClientFrame>(data);
});
