//! [`Client`]: one device's MLS state machine, without I/O.
//!
//! The caller (the SDK) pushes in what the server delivered — KeyPackages, Welcomes, MLS
//! messages — and takes out the bytes to send. Nothing here opens a socket, sleeps or spawns.
//!
//! Commits follow the Delivery Service protocol of DESIGN.md §4: a commit is created *pending*
//! ([`PendingCommit`]), sent, and merged with [`Client::merge_pending_commit`] only once the
//! server accepted it; when the server rejects it because another commit won the epoch, the
//! caller calls [`Client::clear_pending_commit`], processes the winner and retries.
//!
//! Every credential that enters a group is verified against the organisation CA and the
//! revocation list: KeyPackages before an add, every added or updated leaf of an incoming
//! commit *before* it is merged (a commit that fails is dropped and the local state stays at
//! the old epoch), every member of a Welcome before the group is created, and the sender of
//! every application message.

use std::collections::HashMap;
use std::fmt;

use openmls::prelude::tls_codec::DeserializeBytes;
use openmls::prelude::{
    BasicCredential, Capabilities, Ciphersuite, CredentialType, CredentialWithKey, Extension,
    ExtensionType, Extensions, ExternalSender, GroupId, KeyPackage, KeyPackageBundle,
    KeyPackageRef, LeafNodeIndex, MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY, MlsGroup,
    MlsGroupJoinConfig, MlsMessageBodyIn, MlsMessageIn, MlsMessageOut, ProcessedMessageContent,
    Proposal, ProtocolVersion, QueuedProposal, Sender, SenderRatchetConfiguration, StagedCommit,
    StagedWelcome,
};
use openmls_traits::OpenMlsProvider;
use openmls_traits::storage::StorageProvider;
use ward_proto::{
    ClaimedKeyPackage, ConversationId, DeviceCredential, DeviceId, WipeConfirmation,
    WipeInstruction,
};
use zeroize::Zeroizing;

use crate::credential::{Verifier, parse_leaf_credential, to_mls_credential};
use crate::provider::WardProvider;
use crate::state::{self, GroupMeta, Meta};
use crate::{CoreError, Identity, MessageContent, TrustAnchor};

/// Code point of `MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519`, Ward's default.
pub const CIPHERSUITE_XWING: u16 = 0x004D;
/// Code point of `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`, allowed by organisation policy.
pub const CIPHERSUITE_X25519: u16 = 0x0001;
/// The ciphersuite new groups use unless the organisation's policy says otherwise.
pub const DEFAULT_CIPHERSUITE: u16 = CIPHERSUITE_XWING;
/// Every ciphersuite ward-core accepts, default first.
pub const SUPPORTED_CIPHERSUITES: [u16; 2] = [CIPHERSUITE_XWING, CIPHERSUITE_X25519];

/// Most KeyPackages one [`Client::generate_key_packages`] call makes: a top-up, not a flood.
pub const MAX_KEY_PACKAGES_PER_CALL: usize = 1000;

/// Application messages are padded to a multiple of this many bytes (RFC 9420 §6.3.1), so the
/// server sees message sizes only in 64-byte steps.
const PADDING_SIZE: usize = 64;

/// Message secrets kept for this many past epochs, so an application message sent just before
/// a commit and sequenced just after it still decrypts. More would weaken forward secrecy.
const MAX_PAST_EPOCHS: usize = 2;

/// Identity used in the server's external-sender credential when the trust anchor has none.
const DEFAULT_EXTERNAL_SENDER_IDENTITY: &str = "ward-server";

/// One device: its identity and credential, the trust anchor, its MLS groups and the
/// revocation list.
///
/// `Debug` shows the device id and the conversations only.
pub struct Client {
    identity: Identity,
    credential: DeviceCredential,
    /// `credential` as an MLS basic credential, with this device's signature key.
    mls_credential: CredentialWithKey,
    trust: TrustAnchor,
    verifier: Verifier,
    provider: WardProvider,
    /// The loaded MLS groups; openmls writes every change through to `provider`'s storage.
    groups: HashMap<ConversationId, MlsGroup>,
}

/// A commit this device created and has not merged yet.
///
/// Send `commit` (and `welcome`, for `welcome_devices`) to the server as one unit, then call
/// [`Client::merge_pending_commit`] if the server accepted it or
/// [`Client::clear_pending_commit`] if another commit won the epoch.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingCommit {
    /// The TLS-serialised MLS commit message.
    pub commit: Vec<u8>,
    /// The TLS-serialised MLS Welcome, when the commit adds devices.
    pub welcome: Option<Vec<u8>>,
    /// The devices the commit adds (the Welcome is for them).
    pub welcome_devices: Vec<DeviceId>,
    /// The devices the commit removes, including removals proposed earlier (e.g. by the server)
    /// that the commit covers.
    pub removed_devices: Vec<DeviceId>,
    /// The epoch the commit was made in (the server accepts one commit per epoch).
    pub epoch: u64,
}

/// What an incoming MLS message did.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per message and destructured at once; boxing would complicate the API"
)]
#[derive(Debug)]
pub enum Processed {
    /// An application message from a verified member.
    Application {
        /// The sender's verified device credential.
        sender: DeviceCredential,
        /// The decoded content.
        content: MessageContent,
    },
    /// A commit, verified and merged: the group is now at `epoch`.
    Commit {
        /// Devices the commit added (their credentials verified).
        added: Vec<DeviceCredential>,
        /// Devices the commit removed.
        removed: Vec<DeviceId>,
        /// True when this device was removed; the group is now inactive and its state should
        /// be deleted with [`Client::leave_group_state`].
        self_removed: bool,
        /// The new epoch.
        epoch: u64,
    },
    /// A proposal, verified and stored: the next commit this device makes includes it.
    Proposal {
        /// The proposing member, or `None` for an external sender (the server).
        by: Option<DeviceId>,
        /// Devices the proposal removes.
        removes: Vec<DeviceId>,
    },
}

impl Client {
    /// A client for a device whose credential the organisation CA issued.
    ///
    /// Fails with [`CoreError::InvalidCredential`] unless `credential` is signed by
    /// `trust.org_ca_public_key` and certifies `identity`'s public key.
    pub fn new(
        identity: Identity,
        credential: DeviceCredential,
        trust: TrustAnchor,
    ) -> Result<Client, CoreError> {
        let verifier = Verifier::new(&trust)?;
        Self::assemble(identity, credential, trust, verifier, WardProvider::new()?)
    }

    fn assemble(
        identity: Identity,
        credential: DeviceCredential,
        trust: TrustAnchor,
        verifier: Verifier,
        provider: WardProvider,
    ) -> Result<Client, CoreError> {
        verifier.verify_device_credential(&credential)?;
        if credential.signature_key.as_slice() != identity.signature_public_key() {
            return Err(CoreError::credential(
                "the credential certifies another key than this device's identity",
            ));
        }
        let mls_credential = CredentialWithKey {
            credential: to_mls_credential(&credential)?,
            signature_key: identity.signature_public_key().to_vec().into(),
        };
        Ok(Client {
            identity,
            credential,
            mls_credential,
            trust,
            verifier,
            provider,
            groups: HashMap::new(),
        })
    }

    /// The whole state — identity secret key, credential, trust anchor, revocation list, MLS
    /// storage and group list — for the SDK to encrypt and store. See the `state` module for
    /// the format.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        let mut revoked: Vec<DeviceId> = self.verifier.revoked().copied().collect();
        revoked.sort();
        let mut groups: Vec<GroupMeta> = self
            .groups
            .iter()
            .map(|(conversation, group)| GroupMeta {
                conversation: *conversation,
                ciphersuite: u16::from(group.ciphersuite()),
            })
            .collect();
        groups.sort_by_key(|g| g.conversation);
        let meta = Meta {
            credential: self.credential.clone(),
            trust: self.trust.clone(),
            revoked,
            groups,
        };
        let values = self.provider.values()?;
        state::encode(&self.identity.secret_bytes(), &meta, &values)
    }

    /// Restores a client from [`Client::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Client, CoreError> {
        let decoded = state::decode(bytes)?;
        let identity = Identity::from_secret_bytes(&decoded.secret_key);
        let meta = decoded.meta;
        let mut verifier = Verifier::new(&meta.trust)?;
        verifier.set_revoked(meta.revoked);
        let provider = WardProvider::with_values(decoded.values)?;
        let mut client = Self::assemble(identity, meta.credential, meta.trust, verifier, provider)?;
        for group_meta in meta.groups {
            let group_id = group_id(group_meta.conversation);
            // openmls_memory_storage unwraps its JSON decodes, so a corrupted stored value
            // would panic; contain that and report the state as corrupt instead.
            let storage = client.provider.storage();
            let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                MlsGroup::load(storage, &group_id)
            }))
            .map_err(|_| {
                CoreError::InvalidInput("client state: a group's MLS state is corrupt".into())
            })?;
            let group = loaded
                .map_err(|e| CoreError::Storage(format!("cannot load group: {e}")))?
                .ok_or_else(|| {
                    CoreError::InvalidInput("client state: a group's MLS state is missing".into())
                })?;
            if u16::from(group.ciphersuite()) != group_meta.ciphersuite {
                return Err(CoreError::InvalidInput(
                    "client state: a group's ciphersuite differs from its record".into(),
                ));
            }
            client.groups.insert(group_meta.conversation, group);
        }
        Ok(client)
    }

    /// This device's credential.
    pub fn credential(&self) -> &DeviceCredential {
        &self.credential
    }

    /// This device's id.
    pub fn device_id(&self) -> DeviceId {
        self.credential.device_id
    }

    /// The trust anchor this client verifies credentials against.
    pub fn trust_anchor(&self) -> &TrustAnchor {
        &self.trust
    }

    /// Check a remote-wipe instruction (ADR 0011) and, when it is genuine, sign the
    /// confirmation the device sends after erasing its profile.
    ///
    /// Genuine means: the organisation CA this device pinned at enrollment signed
    /// [`WipeInstruction::signed_bytes`] (strict Ed25519) and the instruction names this very
    /// device. Anything else is [`CoreError::InvalidWipeInstruction`] and the caller must
    /// erase nothing: a server (or anyone on the path) without the CA key cannot make a device
    /// destroy its data, and an instruction for one device cannot wipe another.
    pub fn accept_wipe(
        &self,
        instruction: &WipeInstruction,
    ) -> Result<WipeConfirmation, CoreError> {
        let ca = ed25519_dalek::VerifyingKey::from_bytes(&self.trust.org_ca_public_key)
            .map_err(|_| CoreError::InvalidWipeInstruction("the trusted CA key is unusable"))?;
        let signature: [u8; 64] = instruction
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| CoreError::InvalidWipeInstruction("the signature is not 64 bytes"))?;
        let signed = WipeInstruction::signed_bytes(
            instruction.device_id,
            instruction.issued_at,
            instruction.nonce.as_slice(),
        );
        ca.verify_strict(&signed, &ed25519_dalek::Signature::from_bytes(&signature))
            .map_err(|_| CoreError::InvalidWipeInstruction("not signed by the organisation CA"))?;
        if instruction.device_id != self.device_id() {
            return Err(CoreError::InvalidWipeInstruction(
                "the instruction is for another device",
            ));
        }
        let confirmation =
            WipeConfirmation::signed_bytes(self.device_id(), instruction.nonce.as_slice());
        let signature = openmls_traits::signatures::Signer::sign(&self.identity, &confirmation)
            .map_err(|e| CoreError::Internal(format!("signing the wipe confirmation: {e:?}")))?;
        Ok(WipeConfirmation {
            nonce: instruction.nonce.clone(),
            signature: signature.into(),
        })
    }

    /// `n` one-time KeyPackages (TLS-serialised `MlsMessage`s) for upload. Their private keys
    /// stay in this client's state until a Welcome consumes them.
    pub fn generate_key_packages(
        &mut self,
        n: usize,
        ciphersuite: u16,
    ) -> Result<Vec<Vec<u8>>, CoreError> {
        if n > MAX_KEY_PACKAGES_PER_CALL {
            return Err(CoreError::InvalidInput(format!(
                "at most {MAX_KEY_PACKAGES_PER_CALL} KeyPackages per call, {n} asked"
            )));
        }
        let ciphersuite = parse_ciphersuite(ciphersuite)?;
        (0..n)
            .map(|_| self.key_package(ciphersuite, false))
            .collect()
    }

    /// A last-resort KeyPackage (RFC 9420 `last_resort` extension): the server hands it out
    /// when the one-time ones run out, and it stays usable after a join.
    pub fn last_resort_key_package(&mut self, ciphersuite: u16) -> Result<Vec<u8>, CoreError> {
        let ciphersuite = parse_ciphersuite(ciphersuite)?;
        self.key_package(ciphersuite, true)
    }

    fn key_package(
        &self,
        ciphersuite: Ciphersuite,
        last_resort: bool,
    ) -> Result<Vec<u8>, CoreError> {
        let mut builder = KeyPackage::builder().leaf_node_capabilities(capabilities());
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(
                ciphersuite,
                &self.provider,
                &self.identity,
                self.mls_credential.clone(),
            )
            .map_err(CoreError::mls)?;
        MlsMessageOut::from(bundle.key_package().clone())
            .to_bytes()
            .map_err(CoreError::mls)
    }

    /// Replaces the revocation list. Revoked devices are refused in KeyPackages, Welcomes,
    /// commits and as senders of application messages.
    pub fn set_revoked(&mut self, revoked: Vec<DeviceId>) {
        self.verifier.set_revoked(revoked);
    }

    /// Creates the MLS group of a conversation with this device as its only member (epoch 0).
    ///
    /// The group id is the conversation's UUID bytes. When the trust anchor names a server key,
    /// the group lists it in the `external_senders` extension.
    pub fn create_group(
        &mut self,
        conversation: ConversationId,
        ciphersuite: u16,
    ) -> Result<(), CoreError> {
        if self.groups.contains_key(&conversation) {
            return Err(CoreError::ConversationExists);
        }
        let ciphersuite = parse_ciphersuite(ciphersuite)?;
        let mut extensions = Vec::new();
        if let Some(sender) = external_sender(&self.trust) {
            extensions.push(Extension::ExternalSenders(vec![sender]));
        }
        let extensions = Extensions::from_vec(extensions).map_err(CoreError::mls)?;
        let group = MlsGroup::builder()
            .with_group_id(group_id(conversation))
            .ciphersuite(ciphersuite)
            .with_capabilities(capabilities())
            .with_wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .padding_size(PADDING_SIZE)
            .max_past_epochs(MAX_PAST_EPOCHS)
            .sender_ratchet_configuration(SenderRatchetConfiguration::default())
            .with_group_context_extensions(extensions)
            .build(&self.provider, &self.identity, self.mls_credential.clone())
            .map_err(CoreError::mls)?;
        self.groups.insert(conversation, group);
        Ok(())
    }

    /// A pending commit adding the devices of `key_packages` (and any stored proposals).
    ///
    /// Each KeyPackage must pass openmls validation, be for the group's ciphersuite, and carry
    /// a valid, unrevoked credential of exactly the device the server claimed it for.
    ///
    /// The commit carries no UpdatePath unless a covered proposal needs one (RFC 9420 §12.4),
    /// so it stays about 3 KB (X-Wing) at any group size; the Welcome carries the ratchet tree
    /// and grows with the group (about 1.7 MB at 1,000 X-Wing members).
    pub fn add_members(
        &mut self,
        conversation: ConversationId,
        key_packages: &[ClaimedKeyPackage],
    ) -> Result<PendingCommit, CoreError> {
        let group = self
            .groups
            .get(&conversation)
            .ok_or(CoreError::UnknownConversation)?;
        if key_packages.is_empty() {
            return Err(CoreError::InvalidInput("no KeyPackages to add".into()));
        }
        let mut present: Vec<DeviceId> = member_devices(group).collect();
        let mut validated = Vec::with_capacity(key_packages.len());
        for claimed in key_packages {
            let key_package = self.validate_key_package(group, claimed)?;
            if present.contains(&claimed.device_id) {
                return Err(CoreError::InvalidInput(format!(
                    "device {} is already a member or added twice",
                    claimed.device_id
                )));
            }
            present.push(claimed.device_id);
            validated.push(key_package);
        }
        self.commit(conversation, validated, Vec::new(), false)
    }

    fn validate_key_package(
        &self,
        group: &MlsGroup,
        claimed: &ClaimedKeyPackage,
    ) -> Result<KeyPackage, CoreError> {
        let device = claimed.device_id;
        let message = MlsMessageIn::tls_deserialize_exact_bytes(claimed.key_package.as_slice())
            .map_err(|e| {
                CoreError::InvalidInput(format!("KeyPackage of device {device}: {e:?}"))
            })?;
        let MlsMessageBodyIn::KeyPackage(key_package) = message.extract() else {
            return Err(CoreError::InvalidInput(format!(
                "KeyPackage of device {device}: the message is not a KeyPackage"
            )));
        };
        let key_package = key_package
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(|e| CoreError::Mls(format!("KeyPackage of device {device}: {e}")))?;
        if key_package.ciphersuite() != group.ciphersuite() {
            return Err(CoreError::InvalidInput(format!(
                "KeyPackage of device {device} is for ciphersuite 0x{:04X}, the group uses 0x{:04X}",
                u16::from(key_package.ciphersuite()),
                u16::from(group.ciphersuite())
            )));
        }
        let leaf = key_package.leaf_node();
        let found = self
            .verifier
            .verify_leaf(leaf.credential(), leaf.signature_key().as_slice())?;
        if found.device_id != device || found != claimed.credential {
            return Err(CoreError::credential(format!(
                "the KeyPackage claimed for device {device} belongs to device {}",
                found.device_id
            )));
        }
        Ok(key_package)
    }

    /// A pending commit removing `devices` (and covering any stored proposals).
    pub fn remove_devices(
        &mut self,
        conversation: ConversationId,
        devices: &[DeviceId],
    ) -> Result<PendingCommit, CoreError> {
        let group = self
            .groups
            .get(&conversation)
            .ok_or(CoreError::UnknownConversation)?;
        if devices.is_empty() {
            return Err(CoreError::InvalidInput("no devices to remove".into()));
        }
        let mut leaves = Vec::with_capacity(devices.len());
        for device in devices {
            if *device == self.credential.device_id {
                return Err(CoreError::InvalidInput(
                    "a device cannot commit its own removal; another member must".into(),
                ));
            }
            let leaf = leaf_of(group, *device).ok_or_else(|| {
                CoreError::InvalidInput(format!("device {device} is not a member of the group"))
            })?;
            if !leaves.contains(&leaf) {
                leaves.push(leaf);
            }
        }
        self.commit(conversation, Vec::new(), leaves, false)
    }

    /// A pending commit that refreshes this device's leaf key material (post-compromise
    /// security) and covers any stored proposals (e.g. the server's removal proposals).
    pub fn self_update(
        &mut self,
        conversation: ConversationId,
    ) -> Result<PendingCommit, CoreError> {
        if !self.groups.contains_key(&conversation) {
            return Err(CoreError::UnknownConversation);
        }
        self.commit(conversation, Vec::new(), Vec::new(), true)
    }

    fn commit(
        &mut self,
        conversation: ConversationId,
        adds: Vec<KeyPackage>,
        removes: Vec<LeafNodeIndex>,
        force_self_update: bool,
    ) -> Result<PendingCommit, CoreError> {
        let group = self
            .groups
            .get_mut(&conversation)
            .ok_or(CoreError::UnknownConversation)?;
        let own_leaf = group.own_leaf_index();
        let epoch = group.epoch().as_u64();
        let bundle = group
            .commit_builder()
            .propose_adds(adds)
            .propose_removals(removes)
            .force_self_update(force_self_update)
            .consume_proposal_store(true)
            .load_psks(self.provider.storage())
            .map_err(CoreError::mls)?
            // RFC 9420 §12.2: a committer must not cover a proposal removing itself; a stored
            // removal of this device waits for another member's commit.
            .build(
                self.provider.rand(),
                self.provider.crypto(),
                &self.identity,
                |proposal| !removes_leaf(proposal, own_leaf),
            )
            .map_err(CoreError::mls)?
            .stage_commit(&self.provider)
            .map_err(CoreError::mls)?;
        let (commit, welcome, _group_info) = bundle.into_messages();
        let commit = commit.to_bytes().map_err(CoreError::mls)?;
        let welcome = welcome
            .map(|w| w.to_bytes())
            .transpose()
            .map_err(CoreError::mls)?;
        let staged = group
            .pending_commit()
            .ok_or_else(|| CoreError::Internal("commit was not staged".into()))?;
        let welcome_devices = staged
            .add_proposals()
            .map(|add| {
                parse_leaf_credential(add.add_proposal().key_package().leaf_node().credential())
                    .map(|dc| dc.device_id)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let removed_devices = staged
            .remove_proposals()
            .filter_map(|remove| device_at(group, remove.remove_proposal().removed()))
            .collect();
        Ok(PendingCommit {
            commit,
            welcome,
            welcome_devices,
            removed_devices,
            epoch,
        })
    }

    /// Applies this device's pending commit after the server accepted it.
    pub fn merge_pending_commit(&mut self, conversation: ConversationId) -> Result<(), CoreError> {
        let group = self
            .groups
            .get_mut(&conversation)
            .ok_or(CoreError::UnknownConversation)?;
        if group.pending_commit().is_none() {
            return Err(CoreError::NoPendingCommit);
        }
        group
            .merge_pending_commit(&self.provider)
            .map_err(CoreError::mls)
    }

    /// Discards this device's pending commit after the server rejected it (another commit won
    /// the epoch). KeyPackages it consumed must be claimed again for a retry.
    pub fn clear_pending_commit(&mut self, conversation: ConversationId) -> Result<(), CoreError> {
        let group = self
            .groups
            .get_mut(&conversation)
            .ok_or(CoreError::UnknownConversation)?;
        if group.pending_commit().is_none() {
            return Err(CoreError::NoPendingCommit);
        }
        group
            .clear_pending_commit(self.provider.storage())
            .map_err(|e| CoreError::Storage(e.to_string()))
    }

    /// Encrypts `content` as an MLS application message of the current epoch.
    pub fn encrypt(
        &mut self,
        conversation: ConversationId,
        content: &MessageContent,
    ) -> Result<Vec<u8>, CoreError> {
        let group = self
            .groups
            .get_mut(&conversation)
            .ok_or(CoreError::UnknownConversation)?;
        let plaintext = Zeroizing::new(content.to_bytes()?);
        group
            .create_message(&self.provider, &self.identity, &plaintext)
            .map_err(CoreError::mls)?
            .to_bytes()
            .map_err(CoreError::mls)
    }

    /// Joins a conversation's group from a Welcome and returns the members' credentials.
    ///
    /// Refused — and this device's KeyPackage kept for a correct Welcome — when the group id is
    /// not `conversation`'s, when no KeyPackage of this device matches, when the ciphersuite is
    /// not allowed, when any member's credential is invalid or revoked, or when the group lists
    /// an external sender other than the trust anchor's server key.
    pub fn join(
        &mut self,
        conversation: ConversationId,
        welcome: &[u8],
    ) -> Result<Vec<DeviceCredential>, CoreError> {
        if self.groups.contains_key(&conversation) {
            return Err(CoreError::ConversationExists);
        }
        let message = MlsMessageIn::tls_deserialize_exact_bytes(welcome)
            .map_err(|e| CoreError::InvalidInput(format!("Welcome: {e:?}")))?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(CoreError::InvalidInput(
                "the message is not a Welcome".into(),
            ));
        };
        parse_ciphersuite(u16::from(welcome.ciphersuite()))?;
        // openmls deletes the matching one-time KeyPackage as soon as it decrypts the Welcome,
        // before we can check the group. Keep a copy to put back if we refuse the Welcome.
        let mut consumed: Vec<(KeyPackageRef, KeyPackageBundle)> = Vec::new();
        for secrets in welcome.secrets() {
            let reference = secrets.new_member();
            let bundle: Option<KeyPackageBundle> = self
                .provider
                .storage()
                .key_package(&reference)
                .map_err(|e| CoreError::Storage(e.to_string()))?;
            if let Some(bundle) = bundle {
                consumed.push((reference, bundle));
            }
        }
        match self.stage_welcome(conversation, welcome) {
            Ok((group, members)) => {
                self.groups.insert(conversation, group);
                Ok(members)
            }
            Err(error) => {
                for (reference, bundle) in &consumed {
                    self.provider
                        .storage()
                        .write_key_package(reference, bundle)
                        .map_err(|e| CoreError::Storage(e.to_string()))?;
                }
                Err(error)
            }
        }
    }

    fn stage_welcome(
        &self,
        conversation: ConversationId,
        welcome: openmls::prelude::Welcome,
    ) -> Result<(MlsGroup, Vec<DeviceCredential>), CoreError> {
        let staged = StagedWelcome::new_from_welcome(&self.provider, &join_config(), welcome, None)
            .map_err(CoreError::mls)?;
        if staged.group_context().group_id() != &group_id(conversation) {
            return Err(CoreError::WrongGroup);
        }
        // Only our server may propose from outside the group.
        let expected = external_sender(&self.trust);
        let listed = staged.group_context().extensions().external_senders();
        let allowed = match (listed, &expected) {
            (None, _) => true,
            (Some(listed), Some(expected)) => listed.iter().all(|s| s == expected),
            (Some(listed), None) => listed.is_empty(),
        };
        if !allowed {
            return Err(CoreError::InvalidInput(
                "the group lets an unknown party send proposals (external_senders)".into(),
            ));
        }
        let members = staged
            .members()
            .map(|m| self.verifier.verify_leaf(&m.credential, &m.signature_key))
            .collect::<Result<Vec<_>, _>>()?;
        let group = staged.into_group(&self.provider).map_err(CoreError::mls)?;
        Ok((group, members))
    }

    /// Processes one MLS message of a conversation (application message, proposal or commit).
    ///
    /// A commit is verified and merged here; if verification fails the commit is dropped, the
    /// group stays at its epoch and the error says why. A failed message never changes the
    /// group's epoch.
    ///
    /// An application message must carry no journal marker (no journal copy was delivered);
    /// use [`Client::process_with_journal`] for messages delivered with a copy.
    pub fn process(
        &mut self,
        conversation: ConversationId,
        message: &[u8],
    ) -> Result<Processed, CoreError> {
        self.process_with_journal(conversation, message, None)
    }

    /// [`Client::process`], checking the compliance journal copy the server delivered with an
    /// application message (`journal`: the copy and the verified journal key it names, `None`
    /// for the key when this device does not know it).
    ///
    /// The message is decrypted first (so the MLS state advances either way); then, unless
    /// both the message's journal marker and the delivered copy are absent, the copy must be
    /// exactly the sealing of this message under the marker's seed, else
    /// [`CoreError::JournalMismatch`] and the content is not returned.
    pub fn process_with_journal(
        &mut self,
        conversation: ConversationId,
        message: &[u8],
        journal: Option<(
            &ward_proto::JournalCopy,
            Option<&crate::journal::JournalPublicKey>,
        )>,
    ) -> Result<Processed, CoreError> {
        let group = self
            .groups
            .get_mut(&conversation)
            .ok_or(CoreError::UnknownConversation)?;
        let message = MlsMessageIn::tls_deserialize_exact_bytes(message)
            .map_err(|e| CoreError::InvalidInput(format!("MLS message: {e:?}")))?;
        let message = message.try_into_protocol_message().map_err(|_| {
            CoreError::InvalidInput("not an MLS application, proposal or commit message".into())
        })?;
        if message.group_id() != &group_id(conversation) {
            return Err(CoreError::WrongGroup);
        }
        let processed = group
            .process_message(&self.provider, message)
            .map_err(CoreError::mls)?;
        let sender = processed.sender().clone();
        let message_epoch = processed.epoch();
        let credential = processed.credential().clone();
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(application) => {
                // The leaf key is checked when the leaf is in the current tree; a message from
                // a past epoch was checked when its leaf entered the group.
                let leaf_key = match sender {
                    Sender::Member(index) if message_epoch == group.epoch() => {
                        group.member_at(index).map(|m| m.signature_key)
                    }
                    _ => None,
                };
                let sender = match leaf_key {
                    Some(key) => self.verifier.verify_leaf(&credential, &key)?,
                    None => self.verifier.verify_cached(&credential)?,
                };
                let plaintext = Zeroizing::new(application.into_bytes());
                let content = MessageContent::from_bytes(&plaintext)?;
                check_journal(conversation, &sender, &plaintext, &content, journal)?;
                Ok(Processed::Application { sender, content })
            }
            ProcessedMessageContent::ProposalMessage(queued) => {
                let by = match sender {
                    Sender::Member(index) => Some(device_at(group, index).ok_or_else(|| {
                        CoreError::InvalidInput("proposal from an unknown leaf".into())
                    })?),
                    Sender::External(_) => None,
                    _ => {
                        return Err(CoreError::InvalidInput(
                            "proposals from non-members are not accepted".into(),
                        ));
                    }
                };
                let effect = check_proposal(&self.verifier, group, &queued)?;
                group
                    .store_pending_proposal(self.provider.storage(), *queued)
                    .map_err(|e| CoreError::Storage(e.to_string()))?;
                Ok(Processed::Proposal {
                    by,
                    removes: effect.removed.into_iter().collect(),
                })
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let (added, removed) = check_commit(&self.verifier, group, &sender, &staged)?;
                let self_removed = staged.self_removed();
                group
                    .merge_staged_commit(&self.provider, *staged)
                    .map_err(CoreError::mls)?;
                Ok(Processed::Commit {
                    added,
                    removed,
                    self_removed,
                    epoch: group.epoch().as_u64(),
                })
            }
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => Err(
                CoreError::InvalidInput("external join proposals are not accepted".into()),
            ),
            ProcessedMessageContent::OwnPendingCommit
            | ProcessedMessageContent::OwnPrivateMessage => Err(CoreError::OwnMessage),
            #[allow(unreachable_patterns)]
            _ => Err(CoreError::InvalidInput(
                "this kind of MLS message is not supported".into(),
            )),
        }
    }

    /// The conversation's current MLS epoch, if this device has its group.
    pub fn epoch(&self, conversation: ConversationId) -> Option<u64> {
        self.groups.get(&conversation).map(|g| g.epoch().as_u64())
    }

    /// The conversation's ciphersuite code point, if this device has its group.
    pub fn ciphersuite(&self, conversation: ConversationId) -> Option<u16> {
        self.groups
            .get(&conversation)
            .map(|g| u16::from(g.ciphersuite()))
    }

    /// True when this device has the conversation's group.
    pub fn has_group(&self, conversation: ConversationId) -> bool {
        self.groups.contains_key(&conversation)
    }

    /// True when this device has a commit awaiting the server's answer in the conversation.
    pub fn has_pending_commit(&self, conversation: ConversationId) -> bool {
        self.groups
            .get(&conversation)
            .is_some_and(|g| g.pending_commit().is_some())
    }

    /// True while this device is a member; false after a commit removed it.
    pub fn is_active(&self, conversation: ConversationId) -> bool {
        self.groups
            .get(&conversation)
            .is_some_and(MlsGroup::is_active)
    }

    /// The credentials of the group's current members (this device included), in leaf order.
    pub fn members(&self, conversation: ConversationId) -> Vec<DeviceCredential> {
        self.groups
            .get(&conversation)
            .map(|group| {
                group
                    .members()
                    .filter_map(|m| parse_leaf_credential(&m.credential).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The MLS leaf index of a member device: what an external remove proposal (RFC 9420
    /// §12.1.8.1) must name. The server cannot see the tree of a group whose handshake messages
    /// are encrypted, so a member reports it.
    pub fn leaf_index(&self, conversation: ConversationId, device: DeviceId) -> Option<u32> {
        self.groups
            .get(&conversation)
            .and_then(|g| leaf_of(g, device))
            .map(|leaf| leaf.u32())
    }

    /// Deletes the conversation's group state from memory and from the MLS storage, zeroizing
    /// the stored secrets (after this device was removed, or when the conversation is gone).
    pub fn leave_group_state(&mut self, conversation: ConversationId) -> Result<(), CoreError> {
        let mut group = self
            .groups
            .remove(&conversation)
            .ok_or(CoreError::UnknownConversation)?;
        // Storage keys are `label ‖ JSON(key) ‖ version`, and every group-scoped key embeds
        // the JSON of the group id: purging by it zeroizes and removes them all, including
        // past-epoch key pairs that `MlsGroup::delete` does not reach.
        let needle = serde_json::to_vec(group.group_id())
            .map_err(|e| CoreError::Internal(format!("cannot encode group id: {e}")))?;
        self.provider.purge_keys_containing(&needle)?;
        group
            .delete(self.provider.storage())
            .map_err(|e| CoreError::Storage(e.to_string()))?;
        Ok(())
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut conversations: Vec<&ConversationId> = self.groups.keys().collect();
        conversations.sort();
        f.debug_struct("Client")
            .field("device_id", &self.credential.device_id)
            .field("identity", &"<redacted>")
            .field("conversations", &conversations)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PendingCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCommit")
            .field("commit_bytes", &self.commit.len())
            .field("welcome_bytes", &self.welcome.as_ref().map(Vec::len))
            .field("welcome_devices", &self.welcome_devices)
            .field("removed_devices", &self.removed_devices)
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// What a verified proposal does to the membership.
#[derive(Default)]
struct ProposalEffect {
    added: Option<DeviceCredential>,
    removed: Option<DeviceId>,
}

/// Verifies one proposal (standalone or inside a commit): only Add, Update and Remove are
/// accepted, external senders (the server) may only remove, and every new leaf must carry a
/// valid credential — an Update may not change the device.
fn check_proposal(
    verifier: &Verifier,
    group: &MlsGroup,
    queued: &QueuedProposal,
) -> Result<ProposalEffect, CoreError> {
    let external = matches!(queued.sender(), Sender::External(_));
    match queued.proposal() {
        Proposal::Remove(remove) => {
            let device = device_at(group, remove.removed()).ok_or_else(|| {
                CoreError::InvalidInput("a proposal removes a leaf that is not a member".into())
            })?;
            Ok(ProposalEffect {
                removed: Some(device),
                ..ProposalEffect::default()
            })
        }
        _ if external => Err(CoreError::InvalidInput(
            "the server (external sender) may only propose removals".into(),
        )),
        Proposal::Add(add) => {
            let leaf = add.key_package().leaf_node();
            let dc = verifier.verify_leaf(leaf.credential(), leaf.signature_key().as_slice())?;
            Ok(ProposalEffect {
                added: Some(dc),
                ..ProposalEffect::default()
            })
        }
        Proposal::Update(update) => {
            let leaf = update.leaf_node();
            let dc = verifier.verify_leaf(leaf.credential(), leaf.signature_key().as_slice())?;
            if let Sender::Member(index) = queued.sender() {
                same_device(group, *index, &dc)?;
            }
            Ok(ProposalEffect::default())
        }
        other => Err(CoreError::InvalidInput(format!(
            "{:?} proposals are not supported by Ward",
            other.proposal_type()
        ))),
    }
}

/// Verifies a staged commit before it is merged; returns the added devices' credentials and
/// the removed devices.
fn check_commit(
    verifier: &Verifier,
    group: &MlsGroup,
    sender: &Sender,
    staged: &StagedCommit,
) -> Result<(Vec<DeviceCredential>, Vec<DeviceId>), CoreError> {
    let Sender::Member(committer) = sender else {
        return Err(CoreError::InvalidInput(
            "commits from non-members (external joins) are not accepted".into(),
        ));
    };
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for queued in staged.queued_proposals() {
        let effect = check_proposal(verifier, group, queued)?;
        added.extend(effect.added);
        removed.extend(effect.removed);
    }
    if let Some(leaf) = staged.update_path_leaf_node() {
        let dc = verifier.verify_leaf(leaf.credential(), leaf.signature_key().as_slice())?;
        same_device(group, *committer, &dc)?;
    }
    Ok((added, removed))
}

/// Refuses a new leaf for `index` that certifies another device than the current one.
fn same_device(
    group: &MlsGroup,
    index: LeafNodeIndex,
    new: &DeviceCredential,
) -> Result<(), CoreError> {
    match device_at(group, index) {
        Some(current) if current == new.device_id => Ok(()),
        _ => Err(CoreError::credential(
            "a member's new leaf certifies another device than its old one",
        )),
    }
}

fn removes_leaf(proposal: &QueuedProposal, leaf: LeafNodeIndex) -> bool {
    matches!(proposal.proposal(), Proposal::Remove(r) if r.removed() == leaf)
}

/// The device at a leaf of the current tree.
fn device_at(group: &MlsGroup, index: LeafNodeIndex) -> Option<DeviceId> {
    group
        .member(index)
        .and_then(|c| parse_leaf_credential(c).ok())
        .map(|dc| dc.device_id)
}

/// The leaf of a member device.
fn leaf_of(group: &MlsGroup, device: DeviceId) -> Option<LeafNodeIndex> {
    group.members().find_map(|m| {
        parse_leaf_credential(&m.credential)
            .ok()
            .filter(|dc| dc.device_id == device)
            .map(|_| m.index)
    })
}

fn member_devices(group: &MlsGroup) -> impl Iterator<Item = DeviceId> + '_ {
    group
        .members()
        .filter_map(|m| parse_leaf_credential(&m.credential).ok())
        .map(|dc| dc.device_id)
}

/// The server as the group's external sender (RFC 9420 §12.1.8.1), if the trust anchor names
/// its key.
fn external_sender(trust: &TrustAnchor) -> Option<ExternalSender> {
    let key = trust.external_sender_public_key.as_ref()?;
    let identity = trust
        .external_sender_identity
        .as_deref()
        .unwrap_or(DEFAULT_EXTERNAL_SENDER_IDENTITY);
    Some(ExternalSender::new(
        key.clone().into(),
        BasicCredential::new(identity.as_bytes().to_vec()).into(),
    ))
}

/// The MLS group id of a conversation: its UUID's 16 bytes.
fn group_id(conversation: ConversationId) -> GroupId {
    GroupId::from_slice(conversation.0.as_bytes())
}

fn parse_ciphersuite(code: u16) -> Result<Ciphersuite, CoreError> {
    if !SUPPORTED_CIPHERSUITES.contains(&code) {
        return Err(CoreError::UnsupportedCiphersuite(code));
    }
    Ciphersuite::try_from(code).map_err(|_| CoreError::UnsupportedCiphersuite(code))
}

/// The capabilities of every leaf this device creates: Ward's two ciphersuites, basic
/// credentials, and the `last_resort` KeyPackage extension.
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

/// The runtime configuration of a joined group; the same as for created groups.
fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .padding_size(PADDING_SIZE)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .sender_ratchet_configuration(SenderRatchetConfiguration::default())
        .build()
}

/// The recipient's journal check of [`Client::process_with_journal`].
fn check_journal(
    conversation: ConversationId,
    sender: &DeviceCredential,
    plaintext: &[u8],
    content: &MessageContent,
    journal: Option<(
        &ward_proto::JournalCopy,
        Option<&crate::journal::JournalPublicKey>,
    )>,
) -> Result<(), CoreError> {
    use crate::journal::{JournalError, JournalMarker, JournalRecord, verify_copy};
    let marker = JournalMarker::of(content).map_err(CoreError::JournalMismatch)?;
    match (marker, journal) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(CoreError::JournalMismatch(JournalError::Mismatch(
            "the message names a journal copy but none was delivered",
        ))),
        (None, Some(_)) => Err(CoreError::JournalMismatch(JournalError::Mismatch(
            "a journal copy was delivered for a message that names none",
        ))),
        (Some(_), Some((_, None))) => Err(CoreError::JournalMismatch(JournalError::Mismatch(
            "the copy is sealed to a journal key the organisation did not sign",
        ))),
        (Some(marker), Some((copy, Some(key)))) => {
            if key.key_id() != copy.key_id {
                return Err(CoreError::JournalMismatch(JournalError::Mismatch(
                    "the key given is not the one the copy names",
                )));
            }
            let record = JournalRecord {
                conversation_id: conversation,
                sender_user_id: sender.user_id,
                sender_device_id: sender.device_id,
                content: plaintext.to_vec(),
            };
            verify_copy(
                key,
                &marker,
                &record,
                &copy.key_id,
                copy.ciphertext.as_slice(),
            )
            .map_err(CoreError::JournalMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_can_move_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Client>();
        assert_send_sync::<PendingCommit>();
        assert_send_sync::<Processed>();
    }

    #[test]
    fn only_ward_ciphersuites_are_accepted() {
        for code in SUPPORTED_CIPHERSUITES {
            assert_eq!(u16::from(parse_ciphersuite(code).unwrap()), code);
        }
        for code in [0x0000, 0x0002, 0x0003, 0x0007, 0xFFFF] {
            assert!(matches!(
                parse_ciphersuite(code),
                Err(CoreError::UnsupportedCiphersuite(c)) if c == code
            ));
        }
    }
}
