//! Image mirroring for air-gapped installs: an images file resolved and pinned in a lock
//! file, pulled once into an OCI-layout bundle (blobs shared by all images), carried over,
//! and pushed into the local registry with every digest unchanged. See `docs/mirror.md`.

pub mod check;
pub mod discover;
pub mod export;
pub mod image_match;
pub mod images_file;
pub mod layout;
pub mod lock;
pub mod naming;
pub mod progress;
pub mod pull;
pub mod push;
pub mod rewrite;
pub mod scan;

pub use check::{CheckOptions, ImageCheck, check};
pub use export::{ExportOptions, ExportReport, export};
pub use layout::Bundle;
pub use lock::{LockFile, LockedImage, LockedPlatform};
pub use pull::{PullOptions, PullReport, pull};
pub use push::{PushOptions, PushReport, push};
