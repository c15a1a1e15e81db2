//! MLS cost benchmarks: per-message encrypt and decrypt of a 200-byte text, and the cost of
//! adding one member (one add commit + Welcome creation) to groups of 10, 100 and 1,000 devices,
//! on both Ward ciphersuites. Prints commit and Welcome sizes, and the size and time of a
//! self-update commit (which carries an UpdatePath) for comparison.
//!
//! Run: `cargo bench -p ward-core --bench mls` (release build). The groups are built once per
//! size outside the timed loop; each timed add is discarded with `clear_pending_commit`, so every
//! iteration starts from the same state.

#![allow(
    clippy::unwrap_used,
    reason = "benchmark setup panics on unexpected errors"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signer as _, SigningKey};
use ward_core::{
    CIPHERSUITE_X25519, CIPHERSUITE_XWING, Client, Identity, MessageContent, Priority, TrustAnchor,
};
use ward_proto::{
    Bytes, ClaimedKeyPackage, ConversationId, DeviceCredential, DeviceId, UserId, Username,
};

const SUITES: [(u16, &str); 2] = [(CIPHERSUITE_XWING, "xwing"), (CIPHERSUITE_X25519, "x25519")];
const GROUP_SIZES: [usize; 3] = [10, 100, 1000];

struct Org {
    ca: SigningKey,
}

impl Org {
    fn new() -> Self {
        Org {
            ca: SigningKey::from_bytes(&[42u8; 32]),
        }
    }

    fn client(&self, name: &str) -> Client {
        let identity = Identity::generate().unwrap();
        let mut credential = DeviceCredential {
            device_id: DeviceId::random(),
            user_id: UserId::random(),
            username: Username::parse(name).unwrap(),
            signature_key: Bytes(identity.signature_public_key().to_vec()),
            issued_at: 0,
            signature: Bytes(Vec::new()),
        };
        credential.signature = Bytes(self.ca.sign(&credential.signed_bytes()).to_bytes().to_vec());
        let trust = TrustAnchor {
            org_ca_public_key: self.ca.verifying_key().to_bytes(),
            external_sender_public_key: None,
            external_sender_identity: None,
        };
        Client::new(identity, credential, trust).unwrap()
    }
}

fn claim(client: &mut Client, ciphersuite: u16) -> ClaimedKeyPackage {
    ClaimedKeyPackage {
        device_id: client.credential().device_id,
        credential: client.credential().clone(),
        key_package: Bytes(
            client
                .generate_key_packages(1, ciphersuite)
                .unwrap()
                .remove(0),
        ),
        last_resort: false,
    }
}

fn text_200() -> MessageContent {
    // 200 bytes of text; the JSON around it adds ~70 bytes.
    MessageContent::text("x".repeat(200), Priority::Routine, 1_700_000_000_000)
}

/// alice and bob in one group.
fn pair(org: &Org, ciphersuite: u16) -> (ConversationId, Client, Client) {
    let mut alice = org.client("alice");
    let mut bob = org.client("bob");
    let conversation = ConversationId::random();
    alice.create_group(conversation, ciphersuite).unwrap();
    let pending = alice
        .add_members(conversation, &[claim(&mut bob, ciphersuite)])
        .unwrap();
    alice.merge_pending_commit(conversation).unwrap();
    bob.join(conversation, &pending.welcome.unwrap()).unwrap();
    (conversation, alice, bob)
}

/// A group of `size` devices as seen by its creator (the others never need to join).
fn group_of(org: &Org, ciphersuite: u16, size: usize) -> (ConversationId, Client) {
    let mut creator = org.client("creator");
    let conversation = ConversationId::random();
    creator.create_group(conversation, ciphersuite).unwrap();
    let claimed: Vec<ClaimedKeyPackage> = (1..size)
        .map(|i| claim(&mut org.client(&format!("member{i}")), ciphersuite))
        .collect();
    for batch in claimed.chunks(250) {
        creator.add_members(conversation, batch).unwrap();
        creator.merge_pending_commit(conversation).unwrap();
    }
    assert_eq!(creator.members(conversation).len(), size);
    (conversation, creator)
}

fn messages(c: &mut Criterion) {
    let org = Org::new();
    let mut group = c.benchmark_group("message_200B");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (suite, name) in SUITES {
        let (conversation, mut alice, mut bob) = pair(&org, suite);
        let content = text_200();
        let sample = alice.encrypt(conversation, &content).unwrap();
        bob.process(conversation, &sample).unwrap();
        println!(
            "[sizes] {name}: 200-byte text -> {} bytes of MLS ciphertext",
            sample.len()
        );

        group.bench_function(BenchmarkId::new("encrypt", name), |b| {
            b.iter(|| black_box(alice.encrypt(conversation, black_box(&content)).unwrap()))
        });
        // The encrypt loop ran the sender's ratchet far ahead of bob: use a fresh pair.
        let (conversation, mut alice, mut bob) = pair(&org, suite);
        group.bench_function(BenchmarkId::new("decrypt", name), |b| {
            b.iter_batched(
                || alice.encrypt(conversation, &content).unwrap(),
                |ciphertext| black_box(bob.process(conversation, &ciphertext).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn add_member(c: &mut Criterion) {
    let org = Org::new();
    let mut group = c.benchmark_group("add_member");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (suite, name) in SUITES {
        for size in GROUP_SIZES {
            let built = Instant::now();
            let (conversation, mut creator) = group_of(&org, suite, size);
            let build_time = built.elapsed();
            let newcomer = [claim(&mut org.client("newcomer"), suite)];

            let once = creator.add_members(conversation, &newcomer).unwrap();
            creator.clear_pending_commit(conversation).unwrap();
            println!(
                "[sizes] {name} n={size}: add commit {} bytes, Welcome {} bytes (group built in {:.1?})",
                once.commit.len(),
                once.welcome.as_ref().map_or(0, Vec::len),
                build_time
            );
            let started = Instant::now();
            let update = creator.self_update(conversation).unwrap();
            let update_time = started.elapsed();
            creator.clear_pending_commit(conversation).unwrap();
            println!(
                "[sizes] {name} n={size}: self-update commit (with UpdatePath) {} bytes, made in {:.1?}",
                update.commit.len(),
                update_time
            );

            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter(|| {
                    let pending = creator.add_members(conversation, &newcomer).unwrap();
                    creator.clear_pending_commit(conversation).unwrap();
                    black_box(pending)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, messages, add_member);
criterion_main!(benches);
