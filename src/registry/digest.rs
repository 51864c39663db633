//! Content digests (`sha256:<64 hex>`): the names blobs and manifests go by in a registry.
//!
//! Only sha256 and sha512 are accepted: they are the two algorithms the OCI image spec
//! registers, and a digest we cannot recompute is one we cannot verify.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A validated content digest such as `sha256:e3b0c442…`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: String,
    hex: String,
}

/// Why a digest string was refused. The message says what a valid digest looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest \"{0}\" has no algorithm: write it as sha256:<64 lowercase hex digits>")]
    MissingAlgorithm(String),
    #[error(
        "digest \"{digest}\" uses algorithm \"{algorithm}\", which is not supported: use sha256:<64 lowercase hex digits> (or sha512:<128>)"
    )]
    UnsupportedAlgorithm { digest: String, algorithm: String },
    #[error(
        "digest \"{digest}\" is not valid: {algorithm} needs exactly {expected} lowercase hex digits after \"{algorithm}:\", found {found:?}"
    )]
    BadHex {
        digest: String,
        algorithm: String,
        expected: usize,
        found: String,
    },
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(DigestError::MissingAlgorithm(text.to_string()));
        };
        let expected = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            "" => return Err(DigestError::MissingAlgorithm(text.to_string())),
            other => {
                return Err(DigestError::UnsupportedAlgorithm {
                    digest: text.to_string(),
                    algorithm: other.to_string(),
                });
            }
        };
        let lower_hex = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex.len() != expected || !lower_hex {
            return Err(DigestError::BadHex {
                digest: text.to_string(),
                algorithm: algorithm.to_string(),
                expected,
                found: hex.to_string(),
            });
        }
        Ok(Digest {
            algorithm: algorithm.to_string(),
            hex: hex.to_string(),
        })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest {
            algorithm: "sha256".to_string(),
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// Recomputes this digest's algorithm over `bytes` and says whether it matches.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        let actual = match self.algorithm.as_str() {
            "sha512" => hex::encode(sha2::Sha512::digest(bytes)),
            _ => hex::encode(Sha256::digest(bytes)),
        };
        actual == self.hex
    }

    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

/// A digest computed piece by piece, for content too large to hold (blobs streamed to disk).
pub enum Hasher {
    Sha256(Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A hasher for the algorithm of `digest`, so the result can be compared with it.
    pub fn for_digest(digest: &Digest) -> Hasher {
        match digest.algorithm.as_str() {
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            _ => Hasher::Sha256(Sha256::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => ("sha256", hex::encode(h.finalize())),
            Hasher::Sha512(h) => ("sha512", hex::encode(h.finalize())),
        };
        Digest {
            algorithm: algorithm.to_string(),
            hex,
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_input_is_the_well_known_value() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY);
        assert!(
            Digest::parse(EMPTY)
                .map(|d| d.matches(b""))
                .unwrap_or(false)
        );
        assert!(
            !Digest::parse(EMPTY)
                .map(|d| d.matches(b"x"))
                .unwrap_or(true)
        );
    }

    #[test]
    fn sha512_is_verified_with_sha512() {
        let hex512 = hex::encode(sha2::Sha512::digest(b"abc"));
        let d = Digest::parse(&format!("sha512:{hex512}"));
        assert!(d.map(|d| d.matches(b"abc")).unwrap_or(false));
    }

    #[test]
    fn the_streaming_hasher_agrees_with_the_one_shot_digest() {
        let data = b"hello, registry";
        let expected = Digest::sha256_of(data);
        let mut hasher = Hasher::for_digest(&expected);
        hasher.update(&data[..5]);
        hasher.update(&data[5..]);
        assert_eq!(hasher.finish(), expected);
        let hex512 = hex::encode(sha2::Sha512::digest(data));
        let d512 = Digest::parse(&format!("sha512:{hex512}")).unwrap_or_else(|e| panic!("{e}"));
        let mut hasher = Hasher::for_digest(&d512);
        hasher.update(data);
        assert_eq!(hasher.finish(), d512);
    }

    #[test]
    fn rejections_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("e3b0c442", "has no algorithm"),
            (":abc", "has no algorithm"),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                "\"md5\", which is not supported",
            ),
            ("sha256:abc", "exactly 64 lowercase hex digits"),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "exactly 64 lowercase hex",
            ),
            (
                "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "exactly 64",
            ),
            ("sha512:abcd", "exactly 128"),
        ];
        for (input, needle) in cases {
            match Digest::parse(input) {
                Ok(d) => panic!("{input} was accepted as {d}"),
                Err(e) => assert!(e.to_string().contains(needle), "{input}: {e}"),
            }
        }
    }
}
