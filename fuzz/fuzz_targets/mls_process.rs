//! MLS messages and Welcomes from the network, processed by a group member and by a device
//! being invited (`Client::process`, `Client::join`). Whatever the bytes, both must return
//! errors, never panic; a refused message must leave the group at its epoch, and a refused
//! Welcome must not create the group.
//!
//! The group (alice, bob, carol in both ciphersuites; dave invited) is built by
//! `ward_fuzz::fixture::build` from a fixed-seed organisation CA. openmls' own randomness
//! differs per process, so the clients are restored from the snapshots `gen_seeds` wrote to
//! `fixtures/` (together with the seeds in `corpus/mls_process/`), once, lazily. Each input
//! runs on fresh clones restored with `from_bytes(to_bytes())`, so no input affects the next.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ward_core::{Client, CoreError};
use ward_fuzz::fixture::{CONVERSATIONS, MEMBER_EPOCH};
use zeroize::Zeroizing;

static MEMBER: &[u8] = include_bytes!("../fixtures/member.state");
static JOINER: &[u8] = include_bytes!("../fixtures/joiner.state");

/// The state bytes, zeroized on drop like the SDK's copy.
struct Fixture {
    member: Zeroizing<Vec<u8>>,
    joiner: Zeroizing<Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let regenerate = "fixtures/*.state do not restore: regenerate them with \
                          `cargo +nightly run --release --example gen_seeds`";
        let member = Client::from_bytes(MEMBER).expect(regenerate);
        for (conversation, _) in CONVERSATIONS {
            assert_eq!(
                member.epoch(conversation),
                Some(MEMBER_EPOCH),
                "{regenerate}"
            );
        }
        let joiner = Client::from_bytes(JOINER).expect(regenerate);
        Fixture {
            member: member.to_bytes().expect("member state"),
            joiner: joiner.to_bytes().expect("joiner state"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();

    // The member: the server routes a message to the conversation whose group id it carries;
    // try each conversation the way a client that trusted the server's routing would.
    let mut member = Client::from_bytes(&fixture.member).expect("member restores");
    for (conversation, _) in CONVERSATIONS {
        match member.process(conversation, data) {
            Err(CoreError::WrongGroup) => {
                assert_eq!(member.epoch(conversation), Some(MEMBER_EPOCH));
            }
            Err(_) => {
                assert_eq!(
                    member.epoch(conversation),
                    Some(MEMBER_EPOCH),
                    "a refused message changed the epoch"
                );
                break;
            }
            Ok(_) => break,
        }
    }

    // The invited device.
    let mut joiner = Client::from_bytes(&fixture.joiner).expect("joiner restores");
    for (conversation, _) in CONVERSATIONS {
        match joiner.join(conversation, data) {
            Err(CoreError::WrongGroup) => {
                assert!(
                    !joiner.has_group(conversation),
                    "a refused Welcome created the group"
                );
            }
            Err(_) => {
                assert!(
                    !joiner.has_group(conversation),
                    "a refused Welcome created the group"
                );
                break;
            }
            Ok(_) => {
                assert!(joiner.has_group(conversation));
                break;
            }
        }
    }
});
