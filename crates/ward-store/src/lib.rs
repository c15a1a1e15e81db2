//! Ward's server storage: the [`Store`] trait, its domain records, the audit hash chain and
//! (feature `conformance`) the one test suite every backend must pass.
//!
//! Backends live in their own crates (`ward-store-sqlite`, `ward-store-postgres`) so their
//! drivers cannot leak. The server holds an `Arc<dyn Store>` and never writes SQL.
//!
//! What this crate does NOT do: network I/O, authorization decisions, cryptography beyond the
//! audit chain's SHA-256. Multi-step invariants that must be atomic (one commit per epoch,
//! enrollment, device revocation) are single trait methods so each backend runs them in one
//! transaction.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
mod blob;
mod clinical;
mod error;
mod escalation;
mod model;
mod traits;
mod workflow;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use blob::{Blob, BlobState, BlobStore};
pub use clinical::{ClinicalContextStore, DoNotDisturb, MessageTemplate, PatientTag};
pub use error::{AppendError, StoreError, StoreResult};
pub use escalation::*;
pub use model::*;
pub use traits::*;
pub use workflow::*;
