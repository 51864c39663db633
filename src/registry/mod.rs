//! Talking to OCI/Docker registries: image references and digests.

pub mod digest;
pub mod reference;

pub use digest::{Digest, DigestError};
pub use reference::{Reference, ReferenceError};
