//! What a client pushes: blobs (monolithic, or chunked for big ones), cross-repository
//! mounts, and manifests with their original bytes.
//!
//! The protocol (distribution spec, "push"): `POST …/blobs/uploads/` opens a session whose
//! URL comes back in `Location`; the data goes in one `PUT <location>&digest=…`, or in
//! `PATCH` chunks each answered with a new `Location` and the `Range` received so far, closed
//! by an empty `PUT`. After a failed chunk the session is asked where it stands (`GET`,
//! `204` + `Range`) rather than guessed at: older registries ignore `Content-Range` and
//! would append a resent chunk twice.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use reqwest::{Method, StatusCode, Url, header};

use super::client::{BodySource, Call, ProgressFn, RegistryClient, header_str};
use super::digest::Digest;
use super::error::{RegistryError, Target};
use super::location::{content_range, received_bytes, resolve, with_digest};
use super::manifest::Manifest;
use super::retry::{retryable_error, retryable_status};

const OCTET_STREAM: &str = "application/octet-stream";

/// The scope that lets a client push to `repository`.
pub fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// An open upload session in one repository.
#[derive(Clone, Debug)]
pub struct UploadSession {
    pub repository: String,
    /// Where the next request for this session goes (it changes after every chunk).
    pub location: Url,
    /// The smallest chunk the registry accepts (`OCI-Chunk-Min-Length`), if it said.
    pub min_chunk: Option<u64>,
}

/// What a mount request did.
#[derive(Debug)]
pub enum Mount {
    /// The registry linked the blob from the other repository: nothing to upload.
    Mounted,
    /// It could not (or does not mount); it opened an upload session instead.
    Upload(UploadSession),
}

/// A local blob to upload.
#[derive(Clone)]
pub struct BlobFile {
    pub digest: Digest,
    pub path: PathBuf,
    pub size: u64,
}

impl RegistryClient {
    /// `POST /v2/<repository>/blobs/uploads/`: opens an upload session.
    pub async fn start_upload(&self, repository: &str) -> Result<UploadSession, RegistryError> {
        let target = self.target(Some(repository), None);
        let call = Call::new(
            Method::POST,
            "POST blob upload",
            format!("{}/v2/{repository}/blobs/uploads/", self.base),
            &target,
        )
        .scope(push_scope(repository))
        .body(BodySource::Bytes(Bytes::new()));
        let resp = self.send(&call).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Self::status_error(&call, resp).await);
        }
        self.session_from(&call, repository, &resp)
    }

    /// `POST …/blobs/uploads/?mount=<digest>&from=<from>`: links a blob that `from` (same
    /// registry) already holds. A registry that cannot answers with a session to upload
    /// into instead.
    pub async fn mount_blob(
        &self,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<Mount, RegistryError> {
        let target = self.target(Some(repository), Some(&digest.to_string()));
        let mut url = Url::parse(&format!("{}/v2/{repository}/blobs/uploads/", self.base))
            .map_err(|e| self.protocol(&target, format!("bad upload URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let scope = format!("{} repository:{from}:pull", push_scope(repository));
        let call = Call::new(Method::POST, "POST blob mount", url.to_string(), &target)
            .scope(scope)
            .body(BodySource::Bytes(Bytes::new()));
        let resp = self.send(&call).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Upload(self.session_from(&call, repository, &resp)?)),
            _ => Err(Self::status_error(&call, resp).await),
        }
    }

    /// Uploads a local blob: in one `PUT` when it is no larger than `chunk_size`, else in
    /// chunks. Uses `session` when a mount attempt already opened one. A monolithic upload
    /// that fails for a transient reason is started again in a fresh session (the broken
    /// one may hold half the data). Returns the bytes sent.
    pub async fn upload_blob(
        &self,
        repository: &str,
        blob: &BlobFile,
        chunk_size: u64,
        mut session: Option<UploadSession>,
        progress: Option<ProgressFn>,
    ) -> Result<u64, RegistryError> {
        let mut attempt = 1;
        loop {
            let mut open = match session.take() {
                Some(s) => s,
                None => self.start_upload(repository).await?,
            };
            let chunk = chunk_size.max(open.min_chunk.unwrap_or(0)).max(1);
            if blob.size > chunk {
                return self
                    .upload_chunks(&mut open, blob, chunk, Some(0), progress)
                    .await;
            }
            match self.put_whole(&open, blob, progress.clone()).await {
                Ok(()) => return Ok(blob.size),
                Err(e) if attempt < self.retry.attempts && transient(&e) => {
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `PUT <location>&digest=` with the whole blob as the body.
    async fn put_whole(
        &self,
        session: &UploadSession,
        blob: &BlobFile,
        progress: Option<ProgressFn>,
    ) -> Result<(), RegistryError> {
        let target = self.target(Some(&session.repository), Some(&blob.digest.to_string()));
        let call = Call::new(
            Method::PUT,
            "PUT blob",
            with_digest(&session.location, &blob.digest).to_string(),
            &target,
        )
        .scope(push_scope(&session.repository))
        .header(header::CONTENT_TYPE, OCTET_STREAM)
        .body(BodySource::File {
            path: blob.path.clone(),
            offset: 0,
            len: blob.size,
            progress,
        })
        .not_idempotent();
        let resp = self.send(&call).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(Self::status_error(&call, resp).await);
        }
        Ok(())
    }

    /// Sends the blob in `PATCH` chunks of `chunk_size` from `offset` (`None`: ask the
    /// registry where the session stands first), then closes the session with `PUT`.
    /// After a failed chunk (dropped connection, 5xx, 416) the session's offset is read
    /// back with `GET` and the upload carries on from there. Returns the bytes sent.
    pub async fn upload_chunks(
        &self,
        session: &mut UploadSession,
        blob: &BlobFile,
        chunk_size: u64,
        offset: Option<u64>,
        progress: Option<ProgressFn>,
    ) -> Result<u64, RegistryError> {
        let mut offset = match offset {
            Some(o) => o,
            None => self.upload_offset(session).await?,
        };
        let mut sent = 0;
        let mut failures = 0;
        while offset < blob.size {
            let len = chunk_size.min(blob.size - offset);
            match self
                .patch_chunk(session, &blob.path, offset, len, progress.clone())
                .await
            {
                Ok(next) => {
                    sent += len;
                    offset = next;
                }
                Err(e)
                    if failures + 1 < self.retry.attempts
                        && (transient(&e) || e.status() == Some(416)) =>
                {
                    failures += 1;
                    tokio::time::sleep(self.retry.delay(failures, None)).await;
                    offset = self.upload_offset(session).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.finish_upload(session, &blob.digest).await?;
        Ok(sent)
    }

    /// `PATCH` one chunk of `path` into the session; returns the registry's new offset.
    pub async fn patch_chunk(
        &self,
        session: &mut UploadSession,
        path: &Path,
        offset: u64,
        len: u64,
        progress: Option<ProgressFn>,
    ) -> Result<u64, RegistryError> {
        let target = self.target(Some(&session.repository), None);
        let call = Call::new(
            Method::PATCH,
            "PATCH blob chunk",
            session.location.to_string(),
            &target,
        )
        .scope(push_scope(&session.repository))
        .header(header::CONTENT_TYPE, OCTET_STREAM)
        .header(header::CONTENT_RANGE, content_range(offset, len))
        .body(BodySource::File {
            path: path.to_path_buf(),
            offset,
            len,
            progress,
        })
        .not_idempotent();
        let resp = self.send(&call).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Self::status_error(&call, resp).await);
        }
        let next = header_str(&resp, header::RANGE)
            .and_then(|r| received_bytes(&r))
            .unwrap_or(offset + len);
        *session = self.session_from(&call, &session.repository, &resp)?;
        Ok(next)
    }

    /// `GET <location>`: how many bytes the session holds (`204` with `Range`).
    pub async fn upload_offset(&self, session: &mut UploadSession) -> Result<u64, RegistryError> {
        let target = self.target(Some(&session.repository), None);
        let call = Call::new(
            Method::GET,
            "GET upload status",
            session.location.to_string(),
            &target,
        )
        .scope(push_scope(&session.repository));
        let resp = self.send(&call).await?;
        if !resp.status().is_success() {
            return Err(Self::status_error(&call, resp).await);
        }
        let range = header_str(&resp, header::RANGE).unwrap_or_default();
        let offset = received_bytes(&range).ok_or_else(|| {
            self.protocol(
                &target,
                format!("the upload status reply has no usable Range header (\"{range}\")"),
            )
        })?;
        if header_str(&resp, header::LOCATION).is_some() {
            *session = self.session_from(&call, &session.repository, &resp)?;
        }
        Ok(offset)
    }

    /// `PUT <location>&digest=` with no body: closes a chunked session. The registry
    /// checks the digest of everything it received.
    async fn finish_upload(
        &self,
        session: &UploadSession,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let target = self.target(Some(&session.repository), Some(&digest.to_string()));
        let call = Call::new(
            Method::PUT,
            "PUT blob (close upload)",
            with_digest(&session.location, digest).to_string(),
            &target,
        )
        .scope(push_scope(&session.repository))
        .header(header::CONTENT_TYPE, OCTET_STREAM)
        .body(BodySource::Bytes(Bytes::new()));
        let resp = self.send(&call).await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(());
        }
        let err = Self::status_error(&call, resp).await;
        // A retried PUT whose first try went through finds the session gone.
        if self.blob_exists(&session.repository, digest).await? {
            return Ok(());
        }
        Err(err)
    }

    /// `PUT /v2/<repository>/manifests/<reference>` with the manifest's own media type and
    /// bytes; the registry's `Docker-Content-Digest` must equal ours.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest, RegistryError> {
        let target = self.target(Some(repository), Some(reference));
        let call = Call::new(
            Method::PUT,
            "PUT manifest",
            format!("{}/v2/{repository}/manifests/{reference}", self.base),
            &target,
        )
        .scope(push_scope(repository))
        .header(header::CONTENT_TYPE, manifest.media_type.clone())
        .body(BodySource::Bytes(manifest.bytes.clone()));
        let resp = self.send(&call).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(Self::status_error(&call, resp).await);
        }
        let ours = Digest::sha256_of(&manifest.bytes);
        if let Some(value) = header_str(&resp, "docker-content-digest") {
            let theirs = Digest::parse(&value).map_err(|_| RegistryError::BadDigestHeader {
                target: Box::new(target.clone()),
                value,
            })?;
            if theirs != ours {
                return Err(RegistryError::PushedDigestMismatch {
                    target: Box::new(target),
                    ours,
                    theirs,
                });
            }
        }
        Ok(ours)
    }

    fn session_from(
        &self,
        call: &Call<'_>,
        repository: &str,
        resp: &reqwest::Response,
    ) -> Result<UploadSession, RegistryError> {
        let location = header_str(resp, header::LOCATION).ok_or_else(|| {
            self.protocol(
                call.target,
                format!(
                    "{} answered {} without a Location header",
                    call.what,
                    resp.status()
                ),
            )
        })?;
        let location = resolve(&call.url, &location).map_err(|e| self.protocol(call.target, e))?;
        Ok(UploadSession {
            repository: repository.to_string(),
            location,
            min_chunk: header_str(resp, "oci-chunk-min-length").and_then(|v| v.parse().ok()),
        })
    }

    fn protocol(&self, target: &Target, what: String) -> RegistryError {
        RegistryError::Protocol {
            target: Box::new(target.clone()),
            what,
        }
    }
}

/// A failure that may heal: a dropped connection or a 429/5xx reply.
fn transient(error: &RegistryError) -> bool {
    match error {
        RegistryError::Connect { detail, .. } => retryable_error(detail),
        RegistryError::Status { status, .. } => {
            StatusCode::from_u16(*status).is_ok_and(retryable_status)
        }
        _ => false,
    }
}
