//! Registry authentication: credentials, the `WWW-Authenticate` challenge, and the Bearer
//! token reply.
//!
//! Registries answer an unauthenticated request with 401 and a challenge: `Basic` (the
//! distribution registry with htpasswd) or `Bearer realm=…,service=…,scope=…` (Docker Hub,
//! Harbor, Nexus, GHCR), where a token for one scope is fetched from the realm, with Basic
//! credentials when there are any.

use std::collections::BTreeMap;

use crate::secret::Secret;

/// A username and password for one registry. The password is a [`Secret`]: it never prints.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// The username that marks the password as an identity token (an OAuth2 refresh token),
/// as Docker's credential helpers and `config.json` `identitytoken` entries give it.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

impl Credentials {
    /// Whether the secret is an identity token rather than a password.
    pub fn is_identity_token(&self) -> bool {
        self.username == IDENTITY_TOKEN_USER
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value. The error says what is missing.
pub fn parse_challenge(header: &str) -> Result<Challenge, String> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let params = parse_params(rest)?;
    if scheme.eq_ignore_ascii_case("basic") {
        Ok(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let realm = params
            .get("realm")
            .filter(|r| !r.is_empty())
            .ok_or("the Bearer challenge has no realm (token service URL)")?;
        Ok(Challenge::Bearer {
            realm: realm.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    } else {
        Err(format!(
            "authentication scheme \"{scheme}\" is not supported (only Basic and Bearer are)"
        ))
    }
}

/// `key=value` or `key="quoted, \"escaped\""` pairs separated by commas; keys lowercased.
fn parse_params(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(params);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("parameter \"{key}\" has no value"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(format!("parameter \"{key}\" ends inside a quote")),
                    },
                    Some(c) => value.push(c),
                    None => return Err(format!("parameter \"{key}\" ends inside a quote")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim_end().to_string();
        }
        params.insert(key.to_ascii_lowercase(), value);
    }
}

/// The token service's reply: Docker Hub sends `token`, OAuth2-style services `access_token`.
#[derive(serde::Deserialize)]
pub struct TokenReply {
    pub token: Option<String>,
    pub access_token: Option<String>,
    /// Seconds the token lives; see `token_cache`.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenReply {
    pub fn into_token(self) -> Option<String> {
        self.token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
    }
}

/// The scope that lets a client pull from `repository`.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let cases: &[(&str, Challenge)] = &[
            ("Basic realm=\"basic-realm\"", Challenge::Basic),
            ("basic", Challenge::Basic),
            (
                "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/nginx:pull\"",
                Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                    scope: Some("repository:library/nginx:pull".into()),
                },
            ),
            (
                "Bearer realm=https://h/service/token, service=harbor-registry",
                Challenge::Bearer {
                    realm: "https://h/service/token".into(),
                    service: Some("harbor-registry".into()),
                    scope: None,
                },
            ),
            (
                "BEARER Realm=\"https://h/t?a=\\\"b\\\"\" , Scope=\"repository:a:pull,push\"",
                Challenge::Bearer {
                    realm: "https://h/t?a=\"b\"".into(),
                    service: None,
                    scope: Some("repository:a:pull,push".into()),
                },
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_challenge(header).as_ref(), Ok(expected), "{header}");
        }
    }

    #[test]
    fn refuses_unusable_challenges() {
        let cases: &[(&str, &str)] = &[
            ("Bearer service=\"x\"", "has no realm"),
            ("Bearer realm=\"\"", "has no realm"),
            ("Negotiate abc=1", "\"Negotiate\" is not supported"),
            ("Bearer realm=\"https://x", "ends inside a quote"),
            ("Bearer realm", "\"realm\" has no value"),
        ];
        for (header, needle) in cases {
            match parse_challenge(header) {
                Ok(c) => panic!("{header} accepted as {c:?}"),
                Err(e) => assert!(e.contains(needle), "{header}: {e}"),
            }
        }
    }

    #[test]
    fn token_reply_takes_token_or_access_token() {
        let parse = |s: &str| {
            serde_json::from_str::<TokenReply>(s)
                .ok()
                .and_then(TokenReply::into_token)
        };
        assert_eq!(
            parse(r#"{"token":"a","expires_in":300}"#).as_deref(),
            Some("a")
        );
        assert_eq!(parse(r#"{"access_token":"b"}"#).as_deref(), Some("b"));
        assert_eq!(
            parse(r#"{"token":"","access_token":"c"}"#).as_deref(),
            Some("c")
        );
        assert_eq!(parse(r#"{}"#), None);
    }
}
