//! Talking to OCI/Docker registries: image references, digests, and an HTTP client that
//! pings, authenticates, fetches manifests byte-for-byte and checks for blobs.
//!
//! Library only for now; `mirror-images` will build on it.

pub mod auth;
pub mod client;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod reference;

pub use auth::Credentials;
pub use client::{AuthKind, ClientOptions, RegistryClient};
pub use digest::{Digest, DigestError};
pub use error::{RegistryError, Target};
pub use manifest::{Manifest, ManifestHead};
pub use reference::{Reference, ReferenceError};
