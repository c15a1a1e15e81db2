//! The MLS fixture: a deterministic organisation (CA and server keys from fixed seeds) issuing
//! Ward device credentials, and a small group built with ward-core in both of Ward's
//! ciphersuites.
//!
//! openmls draws its own randomness (HPKE keys, epoch secrets) from the provider, so a group
//! cannot be rebuilt bit-for-bit in each fuzzing process, and messages recorded in one process
//! would not decrypt in another. `gen_seeds` therefore builds the group once with [`build`],
//! snapshots the receiving clients with `Client::to_bytes` into `fixtures/`, and writes the
//! messages of that very group as seeds; `mls_process` restores the snapshots, so every seed
//! decrypts and the fuzzer starts from inside the protocol, not at its first length check.

use ed25519_dalek::{Signer as _, SigningKey};
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{
    ExternalProposal, GroupEpoch, GroupId, LeafNodeIndex, SenderExtensionIndex,
};
use openmls_libcrux_crypto::Provider as LibcruxProvider;
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::SignatureScheme;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use uuid::Uuid;
use ward_core::{
    CIPHERSUITE_X25519, CIPHERSUITE_XWING, Client, Identity, MessageContent, MessageRef,
    PatientContext, Priority, Processed, TrustAnchor,
};
use ward_proto::{
    Bytes, ClaimedKeyPackage, ConversationId, DeviceCredential, DeviceId, UserId, Username,
};

/// The fixture's conversation in `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`.
pub const CONVERSATION_X25519: ConversationId =
    ConversationId(Uuid::from_u128(0x0f0f_0001_0000_4000_8000_0000_0000_0001));
/// The fixture's conversation in `MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519`.
pub const CONVERSATION_XWING: ConversationId =
    ConversationId(Uuid::from_u128(0x0f0f_0002_0000_4000_8000_0000_0000_0002));
/// Both conversations with their ciphersuites.
pub const CONVERSATIONS: [(ConversationId, u16); 2] = [
    (CONVERSATION_X25519, CIPHERSUITE_X25519),
    (CONVERSATION_XWING, CIPHERSUITE_XWING),
];
/// The epoch the member's groups are at in the snapshot.
pub const MEMBER_EPOCH: u64 = 1;

/// Credential issue time (Unix seconds).
const ISSUED_AT: i64 = 1_700_000_000;
/// Message time (Unix milliseconds).
const SENT_AT_MS: i64 = 1_700_000_000_000;

/// An organisation whose CA and server keys, and whose devices' identities, come from fixed
/// seeds.
pub struct Org {
    ca: SigningKey,
    server: SigningKey,
    rng: StdRng,
}

impl Default for Org {
    fn default() -> Self {
        Self::new()
    }
}

impl Org {
    /// The fuzzing organisation.
    pub fn new() -> Self {
        Org {
            ca: SigningKey::from_bytes(&[0x5A; 32]),
            server: SigningKey::from_bytes(&[0xA5; 32]),
            rng: StdRng::seed_from_u64(0x0057_4152_4446_555A),
        }
    }

    /// What every device trusts: the CA, and the server as MLS external sender.
    pub fn trust(&self) -> TrustAnchor {
        TrustAnchor {
            org_ca_public_key: self.ca.verifying_key().to_bytes(),
            external_sender_public_key: Some(self.server.verifying_key().to_bytes().to_vec()),
            external_sender_identity: Some("ward.fuzz".to_owned()),
        }
    }

    /// A device credential for device number `n` of user `name`, signed by the CA.
    pub fn issue(&self, n: u128, name: &str, signature_key: [u8; 32]) -> DeviceCredential {
        let mut credential = DeviceCredential {
            device_id: DeviceId(Uuid::from_u128(
                0xdddd_0000_0000_4000_8000_0000_0000_0000 | n,
            )),
            user_id: UserId(Uuid::from_u128(
                0xeeee_0000_0000_4000_8000_0000_0000_0000 | n,
            )),
            username: Username::parse(name).expect("fixture usernames are valid"),
            signature_key: Bytes(signature_key.to_vec()),
            issued_at: ISSUED_AT,
            signature: Bytes(Vec::new()),
        };
        let signature = self.ca.sign(&credential.signed_bytes());
        credential.signature = Bytes(signature.to_bytes().to_vec());
        credential
    }

    /// A client for device number `n` of user `name`, with a seeded identity.
    pub fn client(&mut self, n: u128, name: &str) -> Client {
        let identity = Identity::generate_with(&mut self.rng);
        let credential = self.issue(n, name, identity.signature_public_key());
        Client::new(identity, credential, self.trust()).expect("the CA's credential is accepted")
    }

    /// The server's external proposal to remove `leaf` (RFC 9420 §12.1.8.1), a PublicMessage.
    pub fn server_remove_proposal(
        &self,
        conversation: ConversationId,
        epoch: u64,
        leaf: u32,
    ) -> Vec<u8> {
        ExternalProposal::new_remove::<LibcruxProvider>(
            LeafNodeIndex::new(leaf),
            GroupId::from_slice(conversation.0.as_bytes()),
            GroupEpoch::from(epoch),
            &KeySigner(&self.server),
            SenderExtensionIndex::new(0),
        )
        .expect("the server signs its proposal")
        .tls_serialize_detached()
        .expect("the proposal serialises")
    }
}

/// An openmls signer over an Ed25519 key of the fixture.
struct KeySigner<'a>(&'a SigningKey);

impl Signer for KeySigner<'_> {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.sign(payload).to_bytes().to_vec())
    }
    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// What the server hands out when another member claims one of `client`'s KeyPackages.
pub fn claim(client: &mut Client, ciphersuite: u16) -> ClaimedKeyPackage {
    let key_package = client
        .generate_key_packages(1, ciphersuite)
        .expect("KeyPackages generate")
        .remove(0);
    ClaimedKeyPackage {
        device_id: client.device_id(),
        credential: client.credential().clone(),
        key_package: Bytes(key_package),
        last_resort: false,
    }
}

/// A built fixture.
pub struct Built {
    /// alice: member of both conversations at [`MEMBER_EPOCH`], with bob and carol.
    pub member: Client,
    /// dave: not a member; bob's Welcomes in [`Built::welcomes`] are for his KeyPackages.
    pub joiner: Client,
    /// Messages alice can process at [`MEMBER_EPOCH`]: `(name, TLS-serialised MLS message)`.
    pub messages: Vec<(String, Vec<u8>)>,
    /// Welcomes dave can join with: `(name, TLS-serialised MLS Welcome)`.
    pub welcomes: Vec<(String, Vec<u8>)>,
    /// KeyPackages of dave (not protocol messages; `process` and `join` must refuse them).
    pub key_packages: Vec<(String, Vec<u8>)>,
}

/// Builds the group: alice creates each conversation and adds bob and carol; bob and carol
/// join; then bob and carol send what alice may receive at epoch 1 (application messages, a
/// self-update commit, a removal commit, a commit adding dave with its Welcome) and the server
/// proposes carol's removal. bob's commits are discarded after recording, so all of them are
/// valid against alice's epoch-1 state.
pub fn build() -> Built {
    let mut org = Org::new();
    let mut alice = org.client(1, "alice");
    let mut bob = org.client(2, "bob");
    let mut carol = org.client(3, "carol");
    let mut dave = org.client(4, "dave");
    let mut messages = Vec::new();
    let mut welcomes = Vec::new();
    let mut key_packages = Vec::new();

    for (conversation, ciphersuite) in CONVERSATIONS {
        let suite = if ciphersuite == CIPHERSUITE_XWING {
            "xwing"
        } else {
            "x25519"
        };
        alice
            .create_group(conversation, ciphersuite)
            .expect("create group");
        let claimed = [claim(&mut bob, ciphersuite), claim(&mut carol, ciphersuite)];
        let pending = alice
            .add_members(conversation, &claimed)
            .expect("add bob and carol");
        alice.merge_pending_commit(conversation).expect("merge");
        let welcome = pending.welcome.expect("a welcome for bob and carol");
        bob.join(conversation, &welcome).expect("bob joins");
        carol.join(conversation, &welcome).expect("carol joins");
        assert_eq!(alice.epoch(conversation), Some(MEMBER_EPOCH));

        let mut push =
            |name: &str, bytes: Vec<u8>| messages.push((format!("{suite}-{name}"), bytes));
        let plain = MessageContent::text("BP 90/60, please review", Priority::Urgent, SENT_AT_MS);
        push(
            "app-bob",
            bob.encrypt(conversation, &plain).expect("encrypt"),
        );
        let mut rich =
            MessageContent::text("Reviewed, start fluids", Priority::Stat, SENT_AT_MS + 1);
        rich.reply_to = Some(MessageRef {
            conversation_id: conversation,
            message_id: None,
            seq: Some(1),
            client_message_id: Some(Uuid::from_u128(7)),
        });
        rich.patient = Some(PatientContext {
            system: "urn:oid:2.16.840.1.113883.2.4.6.3".to_owned(),
            value: "123456782".to_owned(),
            display: Some("Doe, J.".to_owned()),
            birth_date: Some("1970-01-01".to_owned()),
        });
        push(
            "app-carol",
            carol.encrypt(conversation, &rich).expect("encrypt"),
        );
        push(
            "app-own",
            alice.encrypt(conversation, &plain).expect("encrypt"),
        );

        let update = bob.self_update(conversation).expect("self update");
        bob.clear_pending_commit(conversation).expect("clear");
        push("commit-update-bob", update.commit);

        let remove = bob
            .remove_devices(conversation, &[carol.device_id()])
            .expect("remove carol");
        bob.clear_pending_commit(conversation).expect("clear");
        push("commit-remove-carol", remove.commit);

        let carol_leaf = alice
            .leaf_index(conversation, carol.device_id())
            .expect("carol is a member");
        push(
            "proposal-server-remove-carol",
            org.server_remove_proposal(conversation, MEMBER_EPOCH, carol_leaf),
        );

        let dave_kp = claim(&mut dave, ciphersuite);
        key_packages.push((
            format!("{suite}-key-package-dave"),
            dave_kp.key_package.0.clone(),
        ));
        let add = bob.add_members(conversation, &[dave_kp]).expect("add dave");
        bob.clear_pending_commit(conversation).expect("clear");
        push("commit-add-dave", add.commit);
        welcomes.push((
            format!("{suite}-welcome-dave"),
            add.welcome.expect("a welcome for dave"),
        ));
    }

    Built {
        member: alice,
        joiner: dave,
        messages,
        welcomes,
        key_packages,
    }
}

/// Checks that every recorded message and Welcome is accepted by clients restored from the
/// snapshots, so the seeds reach the deep paths. Panics otherwise.
pub fn check(member_state: &[u8], joiner_state: &[u8], built: &Built) {
    for (name, message) in &built.messages {
        let mut member = Client::from_bytes(member_state).expect("member state restores");
        let conversation = if name.starts_with("xwing") {
            CONVERSATION_XWING
        } else {
            CONVERSATION_X25519
        };
        let result = member.process(conversation, message);
        if name.ends_with("app-own") {
            assert!(result.is_err(), "{name}: own message accepted");
            continue;
        }
        match result {
            Ok(Processed::Application { .. }) => assert!(name.contains("-app-"), "{name}"),
            Ok(Processed::Commit { epoch, .. }) => {
                assert!(name.contains("-commit-"), "{name}");
                assert_eq!(epoch, MEMBER_EPOCH + 1, "{name}");
            }
            Ok(Processed::Proposal { .. }) => assert!(name.contains("-proposal-"), "{name}"),
            Err(e) => panic!("{name}: the member refuses it: {e}"),
        }
    }
    for (name, welcome) in &built.welcomes {
        let mut joiner = Client::from_bytes(joiner_state).expect("joiner state restores");
        let conversation = if name.starts_with("xwing") {
            CONVERSATION_XWING
        } else {
            CONVERSATION_X25519
        };
        let members = joiner
            .join(conversation, welcome)
            .unwrap_or_else(|e| panic!("{name}: the joiner refuses it: {e}"));
        assert_eq!(members.len(), 4, "{name}");
    }
}
