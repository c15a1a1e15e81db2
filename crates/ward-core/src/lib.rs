#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

//! # Layout
//! - [`attachment`]: encrypted attachments (streaming AEAD, descriptors, type policy, metadata
//!   stripping).
//! - [`content`]: the message content schema inside the MLS plaintext.
//! - `identity`: the device's Ed25519 key pair ([`Identity`]).
//! - `credential`: Ward device credentials inside MLS and their verification ([`TrustAnchor`]).
//! - `client`: the MLS state machine ([`Client`], [`PendingCommit`], [`Processed`]).
//! - [`journal`]: the compliance journal copy (HPKE to the organisation's journal key).
//! - [`patient_index`]: patient tags of the blinded patient index (HPKE to the journal key).
//! - `provider`, `state`: the openmls provider and the serialised state format.
//!
//! What this crate does NOT do: network I/O, timers, persistence to disk, encryption at rest.

pub mod attachment;
mod client;
pub mod content;
mod credential;
pub mod dlp;
mod error;
mod identity;
pub mod journal;
pub mod patient_index;
mod provider;
pub mod retention;
pub mod role_message;
mod state;

pub use client::{
    CIPHERSUITE_X25519, CIPHERSUITE_XWING, Client, DEFAULT_CIPHERSUITE, MAX_KEY_PACKAGES_PER_CALL,
    PendingCommit, Processed, SUPPORTED_CIPHERSUITES,
};
pub use content::{Body, MessageContent, MessageRef, PatientContext, Priority};
pub use credential::TrustAnchor;
pub use error::CoreError;
pub use identity::Identity;
