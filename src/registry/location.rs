//! The small text formats of a blob upload: the `Location` of an upload session, the
//! `Range` a registry reports for it, and the `Content-Range` of a chunk.
//!
//! Registries differ here: the distribution registry sends an absolute `Location` with a
//! `_state` query, Harbor and others a relative path, some with a query of their own; the
//! digest must be *added* to that query, never replace it. `Range` is `0-<last byte>`,
//! inclusive, sometimes with a `bytes=` prefix.

use reqwest::Url;

use super::digest::Digest;

/// Resolves an upload `Location` (absolute, or relative to the request's URL).
pub fn resolve(request_url: &str, location: &str) -> Result<Url, String> {
    let base = Url::parse(request_url).map_err(|e| format!("bad request URL: {e}"))?;
    base.join(location.trim())
        .map_err(|e| format!("the upload Location \"{location}\" is not a URL ({e})"))
}

/// The session URL with `digest=` added to whatever query it already has.
pub fn with_digest(location: &Url, digest: &Digest) -> Url {
    let mut url = location.clone();
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    url
}

/// How many bytes a registry holds for an upload, from its `Range: 0-<end>` reply.
///
/// `0-0` is ambiguous (nothing, or one byte); the distribution registry sends it for an
/// empty session, and chunks are never one byte long, so it means nothing was received.
pub fn received_bytes(range: &str) -> Option<u64> {
    let text = range.trim();
    let text = text.strip_prefix("bytes=").unwrap_or(text);
    let (start, end) = text.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if start != 0 || end < start {
        return None;
    }
    Some(if end == 0 { 0 } else { end + 1 })
}

/// The `Content-Range` of a chunk of `len` bytes starting at `offset` (inclusive end, no
/// unit, as the distribution spec writes it).
pub fn content_range(offset: u64, len: u64) -> String {
    format!("{offset}-{}", offset + len.max(1) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn digest() -> Digest {
        Digest::parse(DIGEST).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn locations_absolute_relative_and_with_a_query() {
        let req = "https://reg.example:5000/v2/team/app/blobs/uploads/";
        let cases = [
            (
                "https://reg.example:5000/v2/team/app/blobs/uploads/abc?_state=xyz",
                "https://reg.example:5000/v2/team/app/blobs/uploads/abc?_state=xyz",
            ),
            (
                "/v2/team/app/blobs/uploads/abc",
                "https://reg.example:5000/v2/team/app/blobs/uploads/abc",
            ),
            (
                "abc?session=1",
                "https://reg.example:5000/v2/team/app/blobs/uploads/abc?session=1",
            ),
            (
                "http://storage.internal/upload/1",
                "http://storage.internal/upload/1",
            ),
        ];
        for (location, expected) in cases {
            let url = resolve(req, location).unwrap_or_else(|e| panic!("{location}: {e}"));
            assert_eq!(url.as_str(), expected, "{location}");
        }
    }

    #[test]
    fn the_digest_is_appended_to_an_existing_query() {
        let url = resolve(
            "http://r/v2/a/blobs/uploads/",
            "/v2/a/blobs/uploads/u1?_state=s%3D%3D&x=1",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let with = with_digest(&url, &digest());
        assert_eq!(
            with.as_str(),
            format!(
                "http://r/v2/a/blobs/uploads/u1?_state=s%3D%3D&x=1&digest=sha256%3A{}",
                &DIGEST[7..]
            )
        );
        let pairs: Vec<(String, String)> = with.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("_state".into(), "s==".into()));
        assert_eq!(pairs[2], ("digest".into(), DIGEST.into()));

        let bare = resolve("http://r/v2/a/blobs/uploads/", "u2").unwrap_or_else(|e| panic!("{e}"));
        let with = with_digest(&bare, &digest());
        assert_eq!(
            with.query(),
            Some(format!("digest=sha256%3A{}", &DIGEST[7..]).as_str())
        );
    }

    #[test]
    fn ranges_say_how_much_was_received() {
        assert_eq!(received_bytes("0-1023"), Some(1024));
        assert_eq!(received_bytes("bytes=0-99"), Some(100));
        assert_eq!(received_bytes("0-0"), Some(0));
        assert_eq!(received_bytes(" 0-4 "), Some(5));
        assert_eq!(received_bytes("5-9"), None);
        assert_eq!(received_bytes("9-5"), None);
        assert_eq!(received_bytes("abc"), None);
        assert_eq!(received_bytes(""), None);
    }

    #[test]
    fn content_range_is_inclusive() {
        assert_eq!(content_range(0, 1024), "0-1023");
        assert_eq!(content_range(1024, 1), "1024-1024");
        assert_eq!(content_range(2048, 10), "2048-2057");
    }
}
