//! What a client fetches: manifests byte-for-byte (verified against their digest), blob
//! existence, and blobs streamed to disk with the digest checked on the way.
//!
//! A blob download goes to a partial file that survives a failed run: the next run hashes
//! what is there and asks for the rest with `Range`. Only a blob whose digest matches is
//! renamed into place, so a file under its final name is always whole and correct.

use std::path::Path;

use reqwest::{Method, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::auth::pull_scope;
use super::client::{Call, ProgressFn, RegistryClient, header_str};
use super::digest::{Digest, Hasher};
use super::error::{RegistryError, Target};
use super::manifest::{self, Kind, Manifest, ManifestHead};

/// containerd's limit, and the size the distribution spec asks registries to accept: a
/// larger "manifest" is a wrong URL or a hostile server, not something to buffer.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// What one blob download did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes received in this run.
    pub transferred: u64,
    /// Bytes that were already in the partial file and were kept.
    pub resumed_from: u64,
}

impl RegistryClient {
    /// Fetches a manifest (tag or digest) byte-for-byte and checks its digest against the
    /// requested one and the registry's `Docker-Content-Digest`.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let target = self.target(Some(repository), Some(reference));
        let call = self.manifest_call(Method::GET, "GET manifest", &target, reference);
        let resp = self.send(&call).await?;
        let resp = Self::expect_success(&call, resp).await?;
        let content_type = header_str(&resp, header::CONTENT_TYPE);
        let header_digest = header_str(&resp, "docker-content-digest");
        let bytes = self.read_limited(&call, resp, MAX_MANIFEST_BYTES).await?;

        let media_type = match manifest::classify(content_type.as_deref(), &bytes) {
            Kind::Supported(mt) => mt,
            Kind::Schema1(media_type) => {
                return Err(RegistryError::Schema1 {
                    target: Box::new(target),
                    media_type,
                });
            }
            Kind::Unsupported(media_type) => {
                return Err(RegistryError::UnsupportedMediaType {
                    target: Box::new(target),
                    media_type,
                });
            }
        };
        let requested = Digest::parse(reference).ok();
        let from_header = match header_digest {
            Some(value) => {
                Some(
                    Digest::parse(&value).map_err(|_| RegistryError::BadDigestHeader {
                        target: Box::new(target.clone()),
                        value,
                    })?,
                )
            }
            None => None,
        };
        for expected in requested.iter().chain(from_header.iter()) {
            if !expected.matches(&bytes) {
                return Err(RegistryError::DigestMismatch {
                    target: Box::new(target),
                    expected: expected.clone(),
                    actual: Digest::sha256_of(&bytes),
                });
            }
        }
        let digest = requested
            .or(from_header)
            .unwrap_or_else(|| Digest::sha256_of(&bytes));
        Ok(Manifest {
            media_type,
            bytes,
            digest,
        })
    }

    /// `HEAD` on a manifest: `None` when the registry does not have it.
    pub async fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let target = self.target(Some(repository), Some(reference));
        let call = self.manifest_call(Method::HEAD, "HEAD manifest", &target, reference);
        let resp = self.send(&call).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = Self::expect_success(&call, resp).await?;
        let digest = match header_str(&resp, "docker-content-digest") {
            Some(value) => {
                Some(
                    Digest::parse(&value).map_err(|_| RegistryError::BadDigestHeader {
                        target: Box::new(target),
                        value,
                    })?,
                )
            }
            None => None,
        };
        Ok(Some(ManifestHead {
            media_type: header_str(&resp, header::CONTENT_TYPE),
            digest,
            size: header_str(&resp, header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        }))
    }

    /// A small blob (an image config) in memory, capped like a manifest and checked
    /// against its digest.
    pub async fn get_small_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<bytes::Bytes, RegistryError> {
        let reference = digest.to_string();
        let target = self.target(Some(repository), Some(&reference));
        let call = Call::new(
            Method::GET,
            "GET blob",
            format!("{}/v2/{repository}/blobs/{reference}", self.base),
            &target,
        )
        .scope(pull_scope(repository));
        let resp = self.send(&call).await?;
        let resp = Self::expect_success(&call, resp).await?;
        let bytes = self.read_limited(&call, resp, MAX_MANIFEST_BYTES).await?;
        if !digest.matches(&bytes) {
            return Err(RegistryError::DigestMismatch {
                target: Box::new(target),
                expected: digest.clone(),
                actual: Digest::sha256_of(&bytes),
            });
        }
        Ok(bytes)
    }

    /// `HEAD /v2/<repository>/blobs/<digest>`: whether the registry already has the blob.
    pub async fn blob_exists(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let reference = digest.to_string();
        let target = self.target(Some(repository), Some(&reference));
        let call = Call::new(
            Method::HEAD,
            "HEAD blob",
            format!("{}/v2/{repository}/blobs/{reference}", self.base),
            &target,
        )
        .scope(pull_scope(repository));
        let resp = self.send(&call).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        Self::expect_success(&call, resp).await.map(|_| true)
    }

    /// Downloads a blob to `dest`, streaming it through `partial` and checking `digest` on
    /// the way. A partial file left by an earlier run is resumed with `Range`; a body cut
    /// off mid-way is resumed the same way, up to the retry limit. On a digest mismatch the
    /// partial file is deleted, so the next run starts clean.
    pub async fn download_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: Option<u64>,
        partial: &Path,
        dest: &Path,
        progress: Option<ProgressFn>,
    ) -> Result<Downloaded, RegistryError> {
        let reference = digest.to_string();
        let target = self.target(Some(repository), Some(&reference));
        let mut transferred = 0;
        let mut resumed_from = None;
        let mut attempt = 1;
        let hasher = loop {
            match self
                .download_attempt(&target, digest, size, partial, &progress)
                .await
            {
                Ok(Attempt::Complete {
                    hasher,
                    kept,
                    received,
                }) => {
                    transferred += received;
                    resumed_from.get_or_insert(kept);
                    break hasher;
                }
                Ok(Attempt::CutOff {
                    kept,
                    received,
                    error,
                }) => {
                    transferred += received;
                    resumed_from.get_or_insert(kept);
                    if attempt >= self.retry.attempts {
                        return Err(error);
                    }
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        let actual = hasher.finish();
        if actual != *digest {
            let _ = tokio::fs::remove_file(partial).await;
            return Err(RegistryError::BlobMismatch {
                target: Box::new(target),
                expected: digest.clone(),
                actual,
            });
        }
        tokio::fs::rename(partial, dest)
            .await
            .map_err(|source| local_error(&target, dest, source))?;
        Ok(Downloaded {
            transferred,
            resumed_from: resumed_from.unwrap_or_default(),
        })
    }

    /// One GET of the rest of a blob into the partial file.
    async fn download_attempt(
        &self,
        target: &Target,
        digest: &Digest,
        size: Option<u64>,
        partial: &Path,
        progress: &Option<ProgressFn>,
    ) -> Result<Attempt, RegistryError> {
        let local = |source| local_error(target, partial, source);
        let mut kept = match tokio::fs::metadata(partial).await {
            Ok(meta) => meta.len(),
            Err(_) => 0,
        };
        if size.is_some_and(|s| kept > s) {
            kept = 0;
        }
        let mut hasher = Hasher::for_digest(digest);
        if kept > 0 {
            hash_prefix(partial, kept, &mut hasher)
                .await
                .map_err(local)?;
        }
        let repository = target.repository.as_deref().unwrap_or_default();
        let mut call = Call::new(
            Method::GET,
            "GET blob",
            format!("{}/v2/{repository}/blobs/{digest}", self.base),
            target,
        )
        .scope(pull_scope(repository));
        if kept > 0 {
            call = call.header(header::RANGE, format!("bytes={kept}-"));
        }
        let mut resp = self.send(&call).await?;
        let status = resp.status();
        let resumes = status == StatusCode::PARTIAL_CONTENT
            && header_str(&resp, header::CONTENT_RANGE)
                .and_then(|r| range_start(&r))
                .is_some_and(|start| start == kept);
        if status == StatusCode::RANGE_NOT_SATISFIABLE && kept > 0 {
            // The partial file is not a prefix the registry recognises: start over.
            let _ = tokio::fs::remove_file(partial).await;
            return Ok(Attempt::CutOff {
                kept: 0,
                received: 0,
                error: Self::status_error(&call, resp).await,
            });
        }
        if !status.is_success() {
            return Err(Self::status_error(&call, resp).await);
        }
        if !resumes {
            // A whole body (the registry or a proxy ignored Range): start from zero.
            kept = 0;
            hasher = Hasher::for_digest(digest);
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumes)
            .truncate(!resumes)
            .open(partial)
            .await
            .map_err(local)?;
        let mut received = 0u64;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    file.flush().await.map_err(local)?;
                    return Ok(Attempt::CutOff {
                        kept,
                        received,
                        error: self.connect_error(&call, &e),
                    });
                }
            };
            received += chunk.len() as u64;
            if let Some(limit) = size
                && kept + received > limit
            {
                drop(file);
                let _ = tokio::fs::remove_file(partial).await;
                return Err(RegistryError::BlobTooLarge {
                    target: Box::new(target.clone()),
                    expected: limit,
                });
            }
            file.write_all(&chunk).await.map_err(local)?;
            hasher.update(&chunk);
            if let Some(progress) = progress {
                progress(chunk.len() as u64);
            }
        }
        file.flush().await.map_err(local)?;
        file.sync_all().await.map_err(local)?;
        Ok(Attempt::Complete {
            hasher,
            kept,
            received,
        })
    }

    fn manifest_call<'a>(
        &self,
        method: Method,
        what: &'static str,
        target: &'a Target,
        reference: &str,
    ) -> Call<'a> {
        let repository = target.repository.as_deref().unwrap_or_default();
        let mut call = Call::new(
            method,
            what,
            format!("{}/v2/{repository}/manifests/{reference}", self.base),
            target,
        )
        .scope(pull_scope(repository));
        call.manifest = true;
        call
    }
}

/// How one download attempt ended (a hard failure is an `Err`).
enum Attempt {
    Complete {
        hasher: Hasher,
        kept: u64,
        received: u64,
    },
    /// The body broke off; what arrived is in the partial file.
    CutOff {
        kept: u64,
        received: u64,
        error: RegistryError,
    },
}

fn local_error(target: &Target, path: &Path, source: std::io::Error) -> RegistryError {
    RegistryError::LocalFile {
        target: Box::new(target.clone()),
        path: path.to_path_buf(),
        source,
    }
}

/// Feeds the first `len` bytes of `path` to `hasher`.
async fn hash_prefix(path: &Path, len: u64, hasher: &mut Hasher) -> std::io::Result<()> {
    let file = tokio::fs::File::open(path).await?;
    let mut reader = file.take(len);
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` reply.
fn range_start(value: &str) -> Option<u64> {
    let value = value.trim();
    let value = value.strip_prefix("bytes").unwrap_or(value).trim_start();
    value.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_start_of_a_content_range() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-0/1"), Some(0));
        assert_eq!(range_start("100-199/200"), Some(100));
        assert_eq!(range_start("bytes */200"), None);
    }
}
