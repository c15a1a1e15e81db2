//! Protocol tests without I/O (STYLE.md §9.2): an in-memory organisation CA issues device
//! credentials, several `Client`s exchange bytes, and the test plays the delivery service —
//! it passes bytes along and decides which of two concurrent commits wins.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on unexpected errors"
)]

use ed25519_dalek::{Signer as _, SigningKey};
use openmls::prelude::tls_codec::DeserializeBytes as _;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{
    BasicCredential, Capabilities, Ciphersuite, CredentialType, CredentialWithKey, ExtensionType,
    ExternalProposal, GroupEpoch, GroupId, KeyPackage, LeafNodeIndex,
    MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY, MlsGroup, MlsGroupJoinConfig, MlsMessageBodyIn,
    MlsMessageIn, MlsMessageOut, SenderExtensionIndex, StagedWelcome,
};
use openmls_libcrux_crypto::Provider as LibcruxProvider;
use openmls_traits::OpenMlsProvider as _;
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::SignatureScheme;
use ward_core::{
    CIPHERSUITE_X25519, CIPHERSUITE_XWING, Client, CoreError, Identity, MessageContent,
    PendingCommit, Priority, Processed, SUPPORTED_CIPHERSUITES, TrustAnchor,
};
use ward_proto::{
    Bytes, ClaimedKeyPackage, ConversationId, DeviceCredential, DeviceId, UserId, Username,
};

// ---------------------------------------------------------------------------------------------
// Test fixtures: an organisation CA, a server key, clients, and a raw openmls member.

/// An organisation: its CA signs device credentials.
struct Org {
    ca: SigningKey,
    /// The server's external-sender key, listed in every group when set.
    server: Option<SigningKey>,
}

impl Org {
    fn new() -> Self {
        Org {
            ca: SigningKey::generate(&mut rand::rngs::OsRng),
            server: None,
        }
    }

    fn with_server() -> Self {
        Org {
            server: Some(SigningKey::generate(&mut rand::rngs::OsRng)),
            ..Org::new()
        }
    }

    fn trust(&self) -> TrustAnchor {
        TrustAnchor {
            org_ca_public_key: self.ca.verifying_key().to_bytes(),
            external_sender_public_key: self
                .server
                .as_ref()
                .map(|k| k.verifying_key().to_bytes().to_vec()),
            external_sender_identity: self.server.as_ref().map(|_| "ward.test".to_string()),
        }
    }

    fn issue(&self, name: &str, signature_key: [u8; 32]) -> DeviceCredential {
        let mut credential = DeviceCredential {
            device_id: DeviceId::random(),
            user_id: UserId::random(),
            username: Username::parse(name).unwrap(),
            signature_key: Bytes(signature_key.to_vec()),
            issued_at: 1_700_000_000,
            signature: Bytes(Vec::new()),
        };
        credential.signature = Bytes(self.ca.sign(&credential.signed_bytes()).to_bytes().to_vec());
        credential
    }

    fn client(&self, name: &str) -> Client {
        self.client_trusting(name, self.trust())
    }

    fn client_trusting(&self, name: &str, trust: TrustAnchor) -> Client {
        let identity = Identity::generate().unwrap();
        let credential = self.issue(name, identity.signature_public_key());
        Client::new(identity, credential, trust).unwrap()
    }
}

/// What the server hands out when another member claims one of `client`'s KeyPackages.
fn claim(client: &mut Client, ciphersuite: u16) -> ClaimedKeyPackage {
    let key_package = client
        .generate_key_packages(1, ciphersuite)
        .unwrap()
        .remove(0);
    ClaimedKeyPackage {
        device_id: client.credential().device_id,
        credential: client.credential().clone(),
        key_package: Bytes(key_package),
        last_resort: false,
    }
}

fn text(s: &str) -> MessageContent {
    MessageContent::text(s, Priority::Routine, 1_700_000_000_000)
}

fn device(c: &Client) -> DeviceId {
    c.credential().device_id
}

/// `sender` encrypts `s`; every receiver decrypts it and sees `sender` as the sender.
fn deliver(
    conversation: ConversationId,
    sender: &mut Client,
    receivers: &mut [&mut Client],
    s: &str,
) {
    let ciphertext = sender.encrypt(conversation, &text(s)).unwrap();
    for receiver in receivers.iter_mut() {
        match receiver.process(conversation, &ciphertext).unwrap() {
            Processed::Application {
                sender: from,
                content,
            } => {
                assert_eq!(from.device_id, device(sender));
                assert_eq!(content, text(s));
            }
            other => panic!("expected an application message, got {other:?}"),
        }
    }
}

/// Every receiver processes a commit; returns what each saw.
fn fan_out_commit(
    conversation: ConversationId,
    commit: &PendingCommit,
    receivers: &mut [&mut Client],
) -> Vec<Processed> {
    receivers
        .iter_mut()
        .map(|r| r.process(conversation, &commit.commit).unwrap())
        .collect()
}

/// alice creates a group and adds bob and carol in one commit; both join.
fn three_member_group(org: &Org, ciphersuite: u16) -> (ConversationId, Client, Client, Client) {
    let mut alice = org.client("alice");
    let mut bob = org.client("bob");
    let mut carol = org.client("carol");
    let conversation = ConversationId::random();
    alice.create_group(conversation, ciphersuite).unwrap();
    let claimed = [claim(&mut bob, ciphersuite), claim(&mut carol, ciphersuite)];
    let pending = alice.add_members(conversation, &claimed).unwrap();
    assert_eq!(pending.epoch, 0);
    assert_eq!(pending.welcome_devices, vec![device(&bob), device(&carol)]);
    assert!(pending.removed_devices.is_empty());
    alice.merge_pending_commit(conversation).unwrap();
    let welcome = pending.welcome.unwrap();
    let members = bob.join(conversation, &welcome).unwrap();
    assert_eq!(members.len(), 3);
    carol.join(conversation, &welcome).unwrap();
    (conversation, alice, bob, carol)
}

/// An openmls signer over a test Ed25519 key (the server, or a raw member).
struct TestSigner(SigningKey);

impl Signer for TestSigner {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.sign(payload).to_bytes().to_vec())
    }
    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[
            Ciphersuite::MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519,
            Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
        ]),
        Some(&[ExtensionType::LastResort]),
        None,
        Some(&[CredentialType::Basic]),
    )
}

/// A member that runs plain openmls without Ward's checks: a modified client. Its credential
/// is whatever the given CA signed.
struct RawMember {
    provider: LibcruxProvider,
    signer: TestSigner,
    credential: DeviceCredential,
    group: Option<MlsGroup>,
}

impl RawMember {
    fn new(ca: &Org, name: &str) -> Self {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let credential = ca.issue(name, key.verifying_key().to_bytes());
        RawMember {
            provider: LibcruxProvider::new().unwrap(),
            signer: TestSigner(key),
            credential,
            group: None,
        }
    }

    fn credential_with_key(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(serde_json::to_vec(&self.credential).unwrap()).into(),
            signature_key: self.signer.0.verifying_key().to_bytes().to_vec().into(),
        }
    }

    fn key_package(&self, ciphersuite: u16) -> Vec<u8> {
        let bundle = KeyPackage::builder()
            .leaf_node_capabilities(capabilities())
            .build(
                Ciphersuite::try_from(ciphersuite).unwrap(),
                &self.provider,
                &self.signer,
                self.credential_with_key(),
            )
            .unwrap();
        MlsMessageOut::from(bundle.key_package().clone())
            .to_bytes()
            .unwrap()
    }

    fn claimed(&self, ciphersuite: u16) -> ClaimedKeyPackage {
        ClaimedKeyPackage {
            device_id: self.credential.device_id,
            credential: self.credential.clone(),
            key_package: Bytes(self.key_package(ciphersuite)),
            last_resort: false,
        }
    }

    fn create_group(&mut self, conversation: ConversationId, ciphersuite: u16) {
        let group = MlsGroup::builder()
            .with_group_id(GroupId::from_slice(conversation.0.as_bytes()))
            .ciphersuite(Ciphersuite::try_from(ciphersuite).unwrap())
            .with_capabilities(capabilities())
            .with_wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .build(&self.provider, &self.signer, self.credential_with_key())
            .unwrap();
        self.group = Some(group);
    }

    fn join(&mut self, welcome: &[u8]) {
        let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact_bytes(welcome)
            .unwrap()
            .extract()
        else {
            panic!("not a welcome")
        };
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .build();
        let staged =
            StagedWelcome::new_from_welcome(&self.provider, &config, welcome, None).unwrap();
        self.group = Some(staged.into_group(&self.provider).unwrap());
    }

    /// A commit adding raw KeyPackages, with no Ward checks; returns (commit, welcome).
    fn add(&mut self, key_packages: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
        let key_packages: Vec<KeyPackage> = key_packages
            .iter()
            .map(|bytes| {
                let MlsMessageBodyIn::KeyPackage(kp) =
                    MlsMessageIn::tls_deserialize_exact_bytes(bytes)
                        .unwrap()
                        .extract()
                else {
                    panic!("not a key package")
                };
                kp.validate(
                    self.provider.crypto(),
                    openmls::prelude::ProtocolVersion::Mls10,
                )
                .unwrap()
            })
            .collect();
        let group = self.group.as_mut().unwrap();
        let (commit, welcome, _) = group
            .add_members(&self.provider, &self.signer, &key_packages)
            .unwrap();
        group.merge_pending_commit(&self.provider).unwrap();
        (commit.to_bytes().unwrap(), welcome.to_bytes().unwrap())
    }
}

/// The external remove proposal the server sends to have `leaf` removed (RFC 9420 §12.1.8.1).
fn server_remove_proposal(
    server: &SigningKey,
    conversation: ConversationId,
    epoch: u64,
    leaf: u32,
) -> Vec<u8> {
    ExternalProposal::new_remove::<LibcruxProvider>(
        LeafNodeIndex::new(leaf),
        GroupId::from_slice(conversation.0.as_bytes()),
        GroupEpoch::from(epoch),
        &TestSigner(server.clone()),
        SenderExtensionIndex::new(0),
    )
    .unwrap()
    .tls_serialize_detached()
    .unwrap()
}

fn group_id_json(conversation: ConversationId) -> Vec<u8> {
    serde_json::to_vec(&GroupId::from_slice(conversation.0.as_bytes())).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn create_add_join_and_message_both_ways_on_both_ciphersuites() {
    for ciphersuite in SUPPORTED_CIPHERSUITES {
        let org = Org::new();
        let (conversation, mut alice, mut bob, mut carol) = three_member_group(&org, ciphersuite);
        for c in [&alice, &bob, &carol] {
            assert_eq!(c.epoch(conversation), Some(1));
            assert_eq!(c.ciphersuite(conversation), Some(ciphersuite));
            assert!(c.has_group(conversation));
            let mut members: Vec<DeviceId> = c
                .members(conversation)
                .iter()
                .map(|m| m.device_id)
                .collect();
            members.sort();
            let mut expected = vec![device(&alice), device(&bob), device(&carol)];
            expected.sort();
            assert_eq!(members, expected);
        }
        deliver(
            conversation,
            &mut alice,
            &mut [&mut bob, &mut carol],
            "from alice",
        );
        deliver(
            conversation,
            &mut bob,
            &mut [&mut alice, &mut carol],
            "from bob",
        );
        deliver(
            conversation,
            &mut carol,
            &mut [&mut alice, &mut bob],
            "from carol",
        );
        deliver(
            conversation,
            &mut bob,
            &mut [&mut alice, &mut carol],
            "bob again",
        );

        // A self-update commit by bob, then messages still flow.
        let pending = bob.self_update(conversation).unwrap();
        assert_eq!(pending.epoch, 1);
        assert!(pending.welcome.is_none());
        for processed in fan_out_commit(conversation, &pending, &mut [&mut alice, &mut carol]) {
            assert!(matches!(
                processed,
                Processed::Commit {
                    epoch: 2,
                    self_removed: false,
                    ..
                }
            ));
        }
        bob.merge_pending_commit(conversation).unwrap();
        deliver(
            conversation,
            &mut carol,
            &mut [&mut alice, &mut bob],
            "after update",
        );
    }
}

#[test]
fn removed_device_cannot_read_later_messages() {
    let org = Org::new();
    let (conversation, mut alice, mut bob, mut carol) =
        three_member_group(&org, CIPHERSUITE_X25519);
    let pending = alice
        .remove_devices(conversation, &[device(&carol)])
        .unwrap();
    assert_eq!(pending.removed_devices, vec![device(&carol)]);
    match bob.process(conversation, &pending.commit).unwrap() {
        Processed::Commit {
            added,
            removed,
            self_removed,
            epoch,
        } => {
            assert!(added.is_empty());
            assert_eq!(removed, vec![device(&carol)]);
            assert!(!self_removed);
            assert_eq!(epoch, 2);
        }
        other => panic!("{other:?}"),
    }
    match carol.process(conversation, &pending.commit).unwrap() {
        Processed::Commit {
            self_removed,
            removed,
            ..
        } => {
            assert!(self_removed);
            assert_eq!(removed, vec![device(&carol)]);
        }
        other => panic!("{other:?}"),
    }
    assert!(!carol.is_active(conversation));
    alice.merge_pending_commit(conversation).unwrap();
    assert_eq!(alice.members(conversation).len(), 2);

    let ciphertext = alice.encrypt(conversation, &text("not for carol")).unwrap();
    assert!(carol.process(conversation, &ciphertext).is_err());
    assert!(matches!(
        bob.process(conversation, &ciphertext).unwrap(),
        Processed::Application { .. }
    ));

    // A device cannot commit its own removal, nor remove a non-member.
    assert!(matches!(
        alice.remove_devices(conversation, &[device(&alice)]),
        Err(CoreError::InvalidInput(_))
    ));
    assert!(matches!(
        alice.remove_devices(conversation, &[DeviceId::random()]),
        Err(CoreError::InvalidInput(_))
    ));

    // Deleting the state really deletes it from the MLS storage.
    let needle = group_id_json(conversation);
    assert!(contains(&carol.to_bytes().unwrap(), &needle));
    carol.leave_group_state(conversation).unwrap();
    assert!(!carol.has_group(conversation));
    assert!(!contains(&carol.to_bytes().unwrap(), &needle));
    assert!(matches!(
        carol.process(conversation, &ciphertext),
        Err(CoreError::UnknownConversation)
    ));
    assert!(matches!(
        carol.leave_group_state(conversation),
        Err(CoreError::UnknownConversation)
    ));
}

#[test]
fn concurrent_commits_loser_clears_processes_winner_and_retries() {
    let org = Org::new();
    let (conversation, mut alice, mut bob, mut carol) = three_member_group(&org, CIPHERSUITE_XWING);
    let mut dave = org.client("dave");

    // Both commit at epoch 1: alice updates, bob adds dave.
    let alice_commit = alice.self_update(conversation).unwrap();
    let bob_commit = bob
        .add_members(conversation, &[claim(&mut dave, CIPHERSUITE_XWING)])
        .unwrap();
    assert_eq!(alice_commit.epoch, 1);
    assert_eq!(bob_commit.epoch, 1);
    assert!(alice.has_pending_commit(conversation));

    // The server accepts alice's (first at epoch 1) and rejects bob's.
    alice.merge_pending_commit(conversation).unwrap();
    bob.clear_pending_commit(conversation).unwrap();
    assert!(!bob.has_pending_commit(conversation));
    assert!(matches!(
        bob.clear_pending_commit(conversation),
        Err(CoreError::NoPendingCommit)
    ));
    for processed in fan_out_commit(conversation, &alice_commit, &mut [&mut bob, &mut carol]) {
        assert!(matches!(processed, Processed::Commit { epoch: 2, .. }));
    }

    // bob retries with a freshly claimed KeyPackage; this time it wins epoch 2.
    let retry = bob
        .add_members(conversation, &[claim(&mut dave, CIPHERSUITE_XWING)])
        .unwrap();
    assert_eq!(retry.epoch, 2);
    bob.merge_pending_commit(conversation).unwrap();
    for processed in fan_out_commit(conversation, &retry, &mut [&mut alice, &mut carol]) {
        match processed {
            Processed::Commit { added, epoch, .. } => {
                assert_eq!(epoch, 3);
                assert_eq!(
                    added.iter().map(|d| d.device_id).collect::<Vec<_>>(),
                    vec![device(&dave)]
                );
            }
            other => panic!("{other:?}"),
        }
    }
    dave.join(conversation, retry.welcome.as_ref().unwrap())
        .unwrap();
    assert_eq!(dave.epoch(conversation), Some(3));
    deliver(
        conversation,
        &mut dave,
        &mut [&mut alice, &mut bob, &mut carol],
        "hello from dave",
    );
    deliver(
        conversation,
        &mut alice,
        &mut [&mut bob, &mut carol, &mut dave],
        "welcome dave",
    );
}

#[test]
fn tampered_ciphertext_is_rejected_and_the_group_keeps_working() {
    let org = Org::new();
    let (conversation, mut alice, mut bob, mut carol) =
        three_member_group(&org, CIPHERSUITE_X25519);
    let ciphertext = alice.encrypt(conversation, &text("original")).unwrap();
    for position in [ciphertext.len() / 2, ciphertext.len() - 1, 20] {
        let mut tampered = ciphertext.clone();
        tampered[position] ^= 0x01;
        assert!(
            bob.process(conversation, &tampered).is_err(),
            "byte {position}"
        );
    }
    assert!(matches!(
        bob.process(conversation, &ciphertext[..ciphertext.len() - 3]),
        Err(CoreError::InvalidInput(_))
    ));
    assert!(matches!(
        bob.process(conversation, b"garbage"),
        Err(CoreError::InvalidInput(_))
    ));
    assert_eq!(bob.epoch(conversation), Some(1));
    // The untouched message still decrypts, and the conversation goes on.
    assert!(matches!(
        bob.process(conversation, &ciphertext).unwrap(),
        Processed::Application { .. }
    ));
    assert!(matches!(
        carol.process(conversation, &ciphertext).unwrap(),
        Processed::Application { .. }
    ));
    deliver(
        conversation,
        &mut alice,
        &mut [&mut bob, &mut carol],
        "next",
    );
    deliver(
        conversation,
        &mut bob,
        &mut [&mut alice, &mut carol],
        "reply",
    );
}

#[test]
fn replayed_application_message_is_rejected_with_state_intact() {
    let org = Org::new();
    let (conversation, mut alice, mut bob, mut carol) = three_member_group(&org, CIPHERSUITE_XWING);
    let first = alice.encrypt(conversation, &text("once")).unwrap();
    assert!(matches!(
        bob.process(conversation, &first).unwrap(),
        Processed::Application { .. }
    ));
    let replay = bob.process(conversation, &first);
    assert!(matches!(replay, Err(CoreError::Mls(_))), "{replay:?}");
    assert_eq!(bob.epoch(conversation), Some(1));
    deliver(
        conversation,
        &mut alice,
        &mut [&mut bob, &mut carol],
        "twice",
    );
    deliver(
        conversation,
        &mut bob,
        &mut [&mut alice, &mut carol],
        "answer",
    );
}

#[test]
fn own_messages_echoed_by_the_server_are_flagged() {
    let org = Org::new();
    let (conversation, mut alice, _bob, _carol) = three_member_group(&org, CIPHERSUITE_X25519);
    let ciphertext = alice.encrypt(conversation, &text("mine")).unwrap();
    assert!(matches!(
        alice.process(conversation, &ciphertext),
        Err(CoreError::OwnMessage)
    ));
}

#[test]
fn key_package_from_a_rogue_ca_is_refused_by_add_members() {
    let org = Org::new();
    let rogue = Org::new();
    let mut alice = org.client("alice");
    let conversation = ConversationId::random();
    alice.create_group(conversation, CIPHERSUITE_XWING).unwrap();

    let mut mallory = rogue.client("mallory");
    let claimed = claim(&mut mallory, CIPHERSUITE_XWING);
    let refused = alice.add_members(conversation, &[claimed]);
    assert!(
        matches!(&refused, Err(CoreError::InvalidCredential { reason }) if reason.contains("not signed by the organisation CA")),
        "{refused:?}"
    );
    assert!(!alice.has_pending_commit(conversation));

    // A legitimate KeyPackage claimed for another device is refused too.
    let mut bob = org.client("bob");
    let carol = org.client("carol");
    let mut mislabelled = claim(&mut bob, CIPHERSUITE_XWING);
    mislabelled.device_id = device(&carol);
    mislabelled.credential = carol.credential().clone();
    assert!(matches!(
        alice.add_members(conversation, &[mislabelled]),
        Err(CoreError::InvalidCredential { .. })
    ));

    // A KeyPackage signed with another key than the certified one: the CA certified bob's
    // key, but the raw member signs its KeyPackage with its own key and claims bob's credential.
    let mut raw = RawMember::new(&org, "eve");
    raw.credential = bob.credential().clone();
    let claimed = raw.claimed(CIPHERSUITE_XWING);
    let refused = alice.add_members(conversation, &[claimed]);
    assert!(
        matches!(refused, Err(CoreError::InvalidCredential { .. })),
        "{refused:?}"
    );

    // A KeyPackage for the wrong ciphersuite, and garbage, are refused.
    let wrong_suite = claim(&mut bob, CIPHERSUITE_X25519);
    assert!(matches!(
        alice.add_members(conversation, &[wrong_suite]),
        Err(CoreError::InvalidInput(_))
    ));
    let mut garbage = claim(&mut bob, CIPHERSUITE_XWING);
    garbage.key_package = Bytes(vec![0, 1, 0, 5, 1, 2, 3]);
    assert!(matches!(
        alice.add_members(conversation, &[garbage]),
        Err(CoreError::InvalidInput(_))
    ));

    // And the group still works with a legitimate add afterwards.
    let pending = alice
        .add_members(conversation, &[claim(&mut bob, CIPHERSUITE_XWING)])
        .unwrap();
    alice.merge_pending_commit(conversation).unwrap();
    bob.join(conversation, &pending.welcome.unwrap()).unwrap();
    deliver(conversation, &mut bob, &mut [&mut alice], "hi");
}

#[test]
fn welcome_into_a_group_with_a_rogue_member_is_refused() {
    let org = Org::new();
    let rogue = Org::new();
    let conversation = ConversationId::random();
    // A modified client with a credential from a rogue CA creates the group and adds bob.
    let mut mallory = RawMember::new(&rogue, "mallory");
    mallory.create_group(conversation, CIPHERSUITE_X25519);
    let mut bob = org.client("bob");
    let kp = claim(&mut bob, CIPHERSUITE_X25519).key_package.0;
    let (_commit, welcome) = mallory.add(&[kp]);
    let refused = bob.join(conversation, &welcome);
    assert!(
        matches!(refused, Err(CoreError::InvalidCredential { .. })),
        "{refused:?}"
    );
    assert!(!bob.has_group(conversation));
}

#[test]
fn commit_adding_a_rogue_device_is_refused_before_merge() {
    let org = Org::new();
    let rogue = Org::new();
    let mut alice = org.client("alice");
    let mut bob = org.client("bob");
    let conversation = ConversationId::random();
    alice
        .create_group(conversation, CIPHERSUITE_X25519)
        .unwrap();
    // A modified client with a legitimate credential joins …
    let mut modified = RawMember::new(&org, "mod");
    let pending = alice
        .add_members(
            conversation,
            &[
                claim(&mut bob, CIPHERSUITE_X25519),
                modified.claimed(CIPHERSUITE_X25519),
            ],
        )
        .unwrap();
    alice.merge_pending_commit(conversation).unwrap();
    let welcome = pending.welcome.unwrap();
    bob.join(conversation, &welcome).unwrap();
    modified.join(&welcome);

    // … and commits the addition of a device certified by a rogue CA.
    let intruder = RawMember::new(&rogue, "intruder");
    let (commit, welcome) = modified.add(&[intruder.key_package(CIPHERSUITE_X25519)]);
    for member in [&mut alice, &mut bob] {
        let refused = member.process(conversation, &commit);
        assert!(
            matches!(refused, Err(CoreError::InvalidCredential { .. })),
            "{refused:?}"
        );
        assert_eq!(member.epoch(conversation), Some(1));
        assert_eq!(member.members(conversation).len(), 3);
    }
    let _ = welcome;
    // Not merged: alice and bob still talk at epoch 1.
    deliver(conversation, &mut alice, &mut [&mut bob], "still here");
}

#[test]
fn revoked_devices_are_refused_everywhere() {
    let org = Org::new();
    let mut alice = org.client("alice");
    let mut bob = org.client("bob");
    let mut carol = org.client("carol");
    let conversation = ConversationId::random();
    alice
        .create_group(conversation, CIPHERSUITE_X25519)
        .unwrap();

    // add_members refuses a revoked device.
    alice.set_revoked(vec![device(&bob)]);
    let refused = alice.add_members(conversation, &[claim(&mut bob, CIPHERSUITE_X25519)]);
    assert!(matches!(refused, Err(CoreError::RevokedDevice(d)) if d == device(&bob)));
    alice.set_revoked(Vec::new());

    let pending = alice
        .add_members(
            conversation,
            &[
                claim(&mut bob, CIPHERSUITE_X25519),
                claim(&mut carol, CIPHERSUITE_X25519),
            ],
        )
        .unwrap();
    alice.merge_pending_commit(conversation).unwrap();
    let welcome = pending.welcome.unwrap();

    // join refuses a group with a revoked member, and keeps the KeyPackage for later.
    carol.set_revoked(vec![device(&bob)]);
    assert!(matches!(
        carol.join(conversation, &welcome),
        Err(CoreError::RevokedDevice(_))
    ));
    carol.set_revoked(Vec::new());
    carol.join(conversation, &welcome).unwrap();
    bob.join(conversation, &welcome).unwrap();

    // Messages from a device revoked later are refused.
    carol.set_revoked(vec![device(&bob)]);
    let ciphertext = bob
        .encrypt(conversation, &text("from a lost phone"))
        .unwrap();
    assert!(matches!(
        carol.process(conversation, &ciphertext),
        Err(CoreError::RevokedDevice(_))
    ));
    assert!(matches!(
        alice.process(conversation, &ciphertext).unwrap(),
        Processed::Application { .. }
    ));

    // A client needs a credential for its own key, signed by the CA it trusts.
    let identity = Identity::generate().unwrap();
    let someone_else = org.issue("dave", Identity::generate().unwrap().signature_public_key());
    assert!(matches!(
        Client::new(identity, someone_else, org.trust()),
        Err(CoreError::InvalidCredential { .. })
    ));
    let identity = Identity::generate().unwrap();
    let credential = org.issue("dave", identity.signature_public_key());
    assert!(matches!(
        Client::new(identity, credential, Org::new().trust()),
        Err(CoreError::InvalidCredential { .. })
    ));
}

#[test]
fn welcome_for_another_conversation_or_device_is_refused() {
    let org = Org::new();
    let mut alice = org.client("alice");
    let mut bob = org.client("bob");
    let mut carol = org.client("carol");
    let conversation = ConversationId::random();
    alice.create_group(conversation, CIPHERSUITE_XWING).unwrap();
    let pending = alice
        .add_members(conversation, &[claim(&mut bob, CIPHERSUITE_XWING)])
        .unwrap();
    alice.merge_pending_commit(conversation).unwrap();
    let welcome = pending.welcome.unwrap();

    // Delivered for the wrong conversation: refused, and bob's KeyPackage survives.
    let other = ConversationId::random();
    assert!(matches!(
        bob.join(other, &welcome),
        Err(CoreError::WrongGroup)
    ));
    assert!(!bob.has_group(other));
    // carol has no KeyPackage in this Welcome.
    let refused = carol.join(conversation, &welcome);
    assert!(matches!(refused, Err(CoreError::Mls(_))), "{refused:?}");
    // Not a Welcome at all.
    assert!(matches!(
        bob.join(conversation, &pending.commit),
        Err(CoreError::InvalidInput(_))
    ));
    // The right conversation works, once.
    bob.join(conversation, &welcome).unwrap();
    assert!(matches!(
        bob.join(conversation, &welcome),
        Err(CoreError::ConversationExists)
    ));
    deliver(conversation, &mut bob, &mut [&mut alice], "joined");

    // A commit of another group delivered under this conversation.
    let mut dave = org.client("dave");
    dave.create_group(other, CIPHERSUITE_XWING).unwrap();
    let foreign = dave.encrypt(other, &text("elsewhere")).unwrap();
    assert!(matches!(
        bob.process(conversation, &foreign),
        Err(CoreError::WrongGroup)
    ));
}

#[test]
fn last_resort_key_package_serves_several_welcomes() {
    let org = Org::new();
    let mut alice = org.client("alice");
    let mut bob = org.client("bob");
    let last_resort = bob.last_resort_key_package(CIPHERSUITE_X25519).unwrap();
    let claimed = ClaimedKeyPackage {
        device_id: device(&bob),
        credential: bob.credential().clone(),
        key_package: Bytes(last_resort),
        last_resort: true,
    };
    for _ in 0..2 {
        let conversation = ConversationId::random();
        alice
            .create_group(conversation, CIPHERSUITE_X25519)
            .unwrap();
        let pending = alice
            .add_members(conversation, std::slice::from_ref(&claimed))
            .unwrap();
        alice.merge_pending_commit(conversation).unwrap();
        bob.join(conversation, &pending.welcome.unwrap()).unwrap();
        deliver(conversation, &mut alice, &mut [&mut bob], "again");
    }
}

#[test]
fn state_round_trips_mid_conversation() {
    let org = Org::new();
    let (conversation, mut alice, mut bob, mut carol) = three_member_group(&org, CIPHERSUITE_XWING);
    deliver(
        conversation,
        &mut alice,
        &mut [&mut bob, &mut carol],
        "before save",
    );
    // bob has an unused KeyPackage in his state, alice a revocation list.
    let spare = claim(&mut bob, CIPHERSUITE_XWING);
    let mut dave = org.client("dave");
    alice.set_revoked(vec![device(&dave)]);

    let saved_alice = alice.to_bytes().unwrap();
    let saved_bob = bob.to_bytes().unwrap();
    assert_eq!(
        *saved_alice,
        *alice.to_bytes().unwrap(),
        "encoding is deterministic"
    );
    drop(alice);
    drop(bob);
    let mut alice = Client::from_bytes(&saved_alice).unwrap();
    let mut bob = Client::from_bytes(&saved_bob).unwrap();
    assert_eq!(alice.epoch(conversation), Some(1));
    assert_eq!(alice.ciphersuite(conversation), Some(CIPHERSUITE_XWING));
    assert_eq!(alice.members(conversation).len(), 3);

    deliver(
        conversation,
        &mut alice,
        &mut [&mut bob, &mut carol],
        "after load",
    );
    deliver(
        conversation,
        &mut bob,
        &mut [&mut alice, &mut carol],
        "bob after load",
    );
    let pending = carol.self_update(conversation).unwrap();
    fan_out_commit(conversation, &pending, &mut [&mut alice, &mut bob]);
    carol.merge_pending_commit(conversation).unwrap();
    deliver(
        conversation,
        &mut alice,
        &mut [&mut bob, &mut carol],
        "new epoch",
    );

    // The revocation list and bob's spare KeyPackage survived.
    assert!(matches!(
        alice.add_members(conversation, &[claim(&mut dave, CIPHERSUITE_XWING)]),
        Err(CoreError::RevokedDevice(_))
    ));
    let second = ConversationId::random();
    alice.create_group(second, CIPHERSUITE_XWING).unwrap();
    let pending = alice.add_members(second, &[spare]).unwrap();
    alice.merge_pending_commit(second).unwrap();
    bob.join(second, &pending.welcome.unwrap()).unwrap();
    deliver(second, &mut bob, &mut [&mut alice], "second group");

    // Damaged state is refused, never a panic.
    assert!(Client::from_bytes(&saved_alice[..saved_alice.len() - 1]).is_err());
    let mut extended = saved_alice.to_vec();
    extended.push(0);
    assert!(Client::from_bytes(&extended).is_err());
    assert!(Client::from_bytes(b"WARDCORE").is_err());
    assert!(Client::from_bytes(&[]).is_err());
    let dbg = format!("{alice:?}");
    assert!(dbg.contains("redacted"));
}

#[test]
fn server_external_remove_proposal_is_processed_and_committed() {
    let org = Org::with_server();
    let server = org.server.clone().unwrap();
    let (conversation, mut alice, mut bob, mut carol) = three_member_group(&org, CIPHERSUITE_XWING);
    let carol_leaf = alice.leaf_index(conversation, device(&carol)).unwrap();
    assert_eq!(
        bob.leaf_index(conversation, device(&carol)),
        Some(carol_leaf)
    );

    // The server proposes carol's removal (remote wipe of a lost phone).
    let proposal = server_remove_proposal(&server, conversation, 1, carol_leaf);
    let carol_device = device(&carol);
    for member in [&mut alice, &mut bob, &mut carol] {
        match member.process(conversation, &proposal).unwrap() {
            Processed::Proposal { by, removes } => {
                assert_eq!(by, None);
                assert_eq!(removes, vec![carol_device]);
            }
            other => panic!("{other:?}"),
        }
    }
    // carol cannot commit her own removal: her commit leaves the proposal out …
    let carols = carol.self_update(conversation).unwrap();
    assert!(carols.removed_devices.is_empty());
    // … and it loses the epoch anyway: bob, the next member online, commits the removal.
    carol.clear_pending_commit(conversation).unwrap();
    let pending = bob.self_update(conversation).unwrap();
    assert_eq!(pending.removed_devices, vec![device(&carol)]);
    bob.merge_pending_commit(conversation).unwrap();
    match alice.process(conversation, &pending.commit).unwrap() {
        Processed::Commit {
            removed,
            self_removed,
            ..
        } => {
            assert_eq!(removed, vec![device(&carol)]);
            assert!(!self_removed);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        carol.process(conversation, &pending.commit).unwrap(),
        Processed::Commit {
            self_removed: true,
            ..
        }
    ));
    deliver(conversation, &mut alice, &mut [&mut bob], "carol is gone");

    // A proposal signed by a key that is not the group's external sender is refused.
    let impostor = SigningKey::generate(&mut rand::rngs::OsRng);
    let forged = server_remove_proposal(&impostor, conversation, 2, 0);
    assert!(alice.process(conversation, &forged).is_err());
    assert_eq!(alice.epoch(conversation), Some(2));
}

#[test]
fn api_misuse_gives_clear_errors() {
    let org = Org::new();
    let mut alice = org.client("alice");
    let conversation = ConversationId::random();
    assert!(matches!(
        alice.create_group(conversation, 0x0003),
        Err(CoreError::UnsupportedCiphersuite(3))
    ));
    assert!(matches!(
        alice.generate_key_packages(1, 0x0002),
        Err(CoreError::UnsupportedCiphersuite(2))
    ));
    assert!(
        alice
            .generate_key_packages(1001, CIPHERSUITE_X25519)
            .is_err()
    );
    assert!(matches!(
        alice.encrypt(conversation, &text("x")),
        Err(CoreError::UnknownConversation)
    ));
    assert!(matches!(
        alice.self_update(conversation),
        Err(CoreError::UnknownConversation)
    ));
    assert_eq!(alice.epoch(conversation), None);
    assert!(alice.members(conversation).is_empty());
    alice
        .create_group(conversation, CIPHERSUITE_X25519)
        .unwrap();
    assert!(matches!(
        alice.create_group(conversation, CIPHERSUITE_X25519),
        Err(CoreError::ConversationExists)
    ));
    assert!(matches!(
        alice.merge_pending_commit(conversation),
        Err(CoreError::NoPendingCommit)
    ));
    assert!(matches!(
        alice.add_members(conversation, &[]),
        Err(CoreError::InvalidInput(_))
    ));
    let too_long = MessageContent::text("a".repeat(64 * 1024 + 1), Priority::Stat, 0);
    assert!(matches!(
        alice.encrypt(conversation, &too_long),
        Err(CoreError::Content(_))
    ));
    let message = CoreError::UnsupportedCiphersuite(3).to_string();
    assert!(message.contains("0x0003"), "{message}");
}

#[test]
fn welcome_listing_an_unknown_external_sender_is_refused() {
    let org = Org::with_server();
    let mut alice = org.client("alice");
    let conversation = ConversationId::random();
    alice
        .create_group(conversation, CIPHERSUITE_X25519)
        .unwrap();

    // bob's trust anchor names another server key: the group's external sender is unknown to him.
    let mut other_server = org.trust();
    other_server.external_sender_public_key = Some(
        SigningKey::generate(&mut rand::rngs::OsRng)
            .verifying_key()
            .to_bytes()
            .to_vec(),
    );
    let mut bob = org.client_trusting("bob", other_server);
    // carol trusts no server at all.
    let mut no_server = org.trust();
    no_server.external_sender_public_key = None;
    let mut carol = org.client_trusting("carol", no_server);
    let mut dave = org.client("dave");
    let pending = alice
        .add_members(
            conversation,
            &[
                claim(&mut bob, CIPHERSUITE_X25519),
                claim(&mut carol, CIPHERSUITE_X25519),
                claim(&mut dave, CIPHERSUITE_X25519),
            ],
        )
        .unwrap();
    alice.merge_pending_commit(conversation).unwrap();
    let welcome = pending.welcome.unwrap();
    assert!(matches!(
        bob.join(conversation, &welcome),
        Err(CoreError::InvalidInput(_))
    ));
    assert!(matches!(
        carol.join(conversation, &welcome),
        Err(CoreError::InvalidInput(_))
    ));
    dave.join(conversation, &welcome).unwrap();

    // A trust anchor whose server key is not an Ed25519 key is refused up front.
    let mut broken = org.trust();
    broken.external_sender_public_key = Some(vec![1, 2, 3]);
    let identity = Identity::generate().unwrap();
    let credential = org.issue("erin", identity.signature_public_key());
    assert!(matches!(
        Client::new(identity, credential, broken),
        Err(CoreError::InvalidInput(_))
    ));
}

/// The recipient's journal check inside MLS processing: an honest copy passes; a missing
/// copy, a copy for a message that names none, a copy under an unknown key and a copy of
/// other content are all `JournalMismatch`, without the content; the group keeps working.
#[test]
fn journal_copies_are_checked_by_every_recipient() {
    use ward_core::journal::{JournalKeyPair, JournalMarker, JournalRecord, seal};
    use ward_proto::JournalCopy;

    let org = Org::new();
    let (conversation, mut alice, mut bob, mut carol) = three_member_group(&org, CIPHERSUITE_XWING);
    let keys = JournalKeyPair::generate(&mut rand::rngs::OsRng).unwrap();
    let key = keys.public().clone();
    let journaled = |alice: &Client, body: &str, journal_body: &str| {
        let mut content = text(body);
        let marker = JournalMarker::generate(&key, &mut rand::rngs::OsRng);
        marker.attach(&mut content).unwrap();
        let mut journal_content = text(journal_body);
        marker.attach(&mut journal_content).unwrap();
        let record = JournalRecord {
            conversation_id: conversation,
            sender_user_id: alice.credential().user_id,
            sender_device_id: device(alice),
            content: journal_content.to_bytes().unwrap(),
        };
        let copy = JournalCopy {
            key_id: key.key_id().to_owned(),
            ciphertext: Bytes(seal(&key, &marker, &record).unwrap()),
        };
        (content, copy)
    };
    let mismatch = |r: Result<Processed, CoreError>| {
        assert!(
            matches!(r, Err(CoreError::JournalMismatch(_))),
            "expected a journal mismatch, got {r:?}"
        );
    };

    // Honest: both recipients accept; the archive copy opens to the plaintext they read.
    let (content, copy) = journaled(&alice, "K+ 6.1", "K+ 6.1");
    let ct = alice.encrypt(conversation, &content).unwrap();
    for r in [&mut bob, &mut carol] {
        match r
            .process_with_journal(conversation, &ct, Some((&copy, Some(&key))))
            .unwrap()
        {
            Processed::Application { content: got, .. } => assert_eq!(got, content),
            other => panic!("{other:?}"),
        }
    }
    let opened = keys.open(copy.ciphertext.as_slice()).unwrap();
    assert_eq!(
        MessageContent::from_bytes(&opened.content).unwrap(),
        content
    );

    // The copy journals other content than the message.
    let (content, forged) = journaled(&alice, "the real text", "a decoy");
    let ct = alice.encrypt(conversation, &content).unwrap();
    mismatch(bob.process_with_journal(conversation, &ct, Some((&forged, Some(&key)))));
    // The server delivered no copy for a message that names one.
    mismatch(carol.process_with_journal(conversation, &ct, None));

    // A copy for a message that names none; a copy under a key the recipient does not know.
    let (_, copy) = journaled(&alice, "x", "x");
    let ct = alice.encrypt(conversation, &text("unjournaled")).unwrap();
    mismatch(bob.process_with_journal(conversation, &ct, Some((&copy, Some(&key)))));
    let (content, copy) = journaled(&alice, "y", "y");
    let ct = alice.encrypt(conversation, &content).unwrap();
    mismatch(carol.process_with_journal(conversation, &ct, Some((&copy, None))));

    deliver(
        conversation,
        &mut alice,
        &mut [&mut bob, &mut carol],
        "still fine",
    );
}

// ---------------------------------------------------------------------------------------------
// Remote wipe instructions (ADR 0011).

fn wipe_instruction(signer: &SigningKey, device: DeviceId) -> ward_proto::WipeInstruction {
    let nonce = [42u8; 32];
    let signed = ward_proto::WipeInstruction::signed_bytes(device, 1_800_000_000, &nonce);
    ward_proto::WipeInstruction {
        device_id: device,
        issued_at: 1_800_000_000,
        nonce: Bytes(nonce.to_vec()),
        signature: Bytes(signer.sign(&signed).to_bytes().to_vec()),
    }
}

#[test]
fn wipe_instruction_signed_by_the_ca_for_this_device_is_accepted_and_confirmed() {
    let org = Org::new();
    let alice = org.client("alice");
    let instruction = wipe_instruction(&org.ca, alice.device_id());
    let confirmation = alice.accept_wipe(&instruction).unwrap();
    assert_eq!(confirmation.nonce, instruction.nonce);
    // The confirmation verifies under the device's own key, as the server checks it.
    let key = ed25519_dalek::VerifyingKey::from_bytes(
        alice
            .credential()
            .signature_key
            .as_slice()
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let sig: [u8; 64] = confirmation.signature.as_slice().try_into().unwrap();
    key.verify_strict(
        &ward_proto::WipeConfirmation::signed_bytes(alice.device_id(), &[42u8; 32]),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .unwrap();
}

#[test]
fn forged_unsigned_or_foreign_wipe_instructions_are_refused() {
    let org = Org::new();
    let alice = org.client("alice");
    // Signed by another key (e.g. a server without the CA key).
    let forger = SigningKey::generate(&mut rand::rngs::OsRng);
    let forged = wipe_instruction(&forger, alice.device_id());
    assert!(matches!(
        alice.accept_wipe(&forged),
        Err(CoreError::InvalidWipeInstruction(_))
    ));
    // Unsigned.
    let mut unsigned = wipe_instruction(&org.ca, alice.device_id());
    unsigned.signature = Bytes(Vec::new());
    assert!(matches!(
        alice.accept_wipe(&unsigned),
        Err(CoreError::InvalidWipeInstruction(_))
    ));
    // Genuine, but for another device.
    let other = wipe_instruction(&org.ca, DeviceId::random());
    assert!(matches!(
        alice.accept_wipe(&other),
        Err(CoreError::InvalidWipeInstruction(_))
    ));
    // A genuine instruction whose fields were changed afterwards.
    let mut altered = wipe_instruction(&org.ca, alice.device_id());
    altered.issued_at += 1;
    assert!(matches!(
        alice.accept_wipe(&altered),
        Err(CoreError::InvalidWipeInstruction(_))
    ));
}
