//! Talking to OCI/Docker registries: image references, digests, and an HTTP client that
//! pings, authenticates, fetches manifests byte-for-byte, streams blobs to disk, uploads
//! blobs (monolithic, chunked, mounted) and pushes manifests. `mirror` builds on it.

pub mod auth;
pub mod client;
pub mod descriptor;
pub mod digest;
pub mod docker_config;
pub mod error;
pub mod fetch;
pub mod harbor;
pub mod location;
pub mod manifest;
pub mod reference;
pub mod retry;
pub mod token_cache;
pub mod upload;

pub use auth::Credentials;
pub use client::{AuthKind, ClientOptions, ProgressFn, RegistryClient};
pub use descriptor::{Descriptor, Platform};
pub use digest::{Digest, DigestError};
pub use docker_config::DockerConfig;
pub use error::{RegistryError, Target};
pub use fetch::Downloaded;
pub use harbor::{HarborProjects, projects_of};
pub use manifest::{Manifest, ManifestHead};
pub use reference::{Reference, ReferenceError};
pub use retry::RetryPolicy;
pub use upload::{BlobFile, Mount, UploadSession};
