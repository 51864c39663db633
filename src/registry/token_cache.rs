//! Bearer tokens by scope, with their lifetime, so that a long pull or push renews a token
//! before the registry starts refusing it.
//!
//! A token service says how long a token lives (`expires_in`, seconds; the distribution
//! spec says to assume 60 when it is missing). A token is used only while more than a
//! margin of its life is left: a fifth of its lifetime, at most 30 s. Renewing before the
//! request matters most for uploads: a 401 to a PUT of a 1 GiB layer wastes the upload.
//! Times are the local clock when the token was asked for, so a registry whose clock is off
//! cannot make a token look fresher than it is.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::secret::Secret;

/// The lifetime the distribution spec says to assume when a token service gives none.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
const MAX_MARGIN: Duration = Duration::from_secs(30);

/// One token and when it must no longer be used.
#[derive(Clone, Debug)]
pub struct CachedToken {
    pub token: Secret,
    /// Renew from this moment on.
    pub renew_at: Instant,
}

impl CachedToken {
    /// A token received at `asked` (when the request for it was sent), living `lifetime`.
    pub fn new(token: Secret, asked: Instant, lifetime: Option<Duration>) -> CachedToken {
        let lifetime = lifetime
            .filter(|l| !l.is_zero())
            .unwrap_or(DEFAULT_LIFETIME);
        let margin = (lifetime / 5).min(MAX_MARGIN);
        CachedToken {
            token,
            renew_at: asked + (lifetime - margin),
        }
    }

    pub fn fresh(&self, now: Instant) -> bool {
        now < self.renew_at
    }
}

/// Tokens by scope (the scope string a request asks for, `""` for `/v2/`).
#[derive(Default)]
pub struct TokenCache {
    tokens: HashMap<String, CachedToken>,
}

impl TokenCache {
    /// The token for `scope`, if there is one that is still fresh at `now`.
    pub fn get(&self, scope: &str, now: Instant) -> Option<&Secret> {
        self.tokens
            .get(scope)
            .filter(|t| t.fresh(now))
            .map(|t| &t.token)
    }

    pub fn insert(&mut self, scope: &str, token: CachedToken) {
        self.tokens.insert(scope.to_string(), token);
    }

    /// Forgets a token the registry refused, so the next request asks for a new one.
    pub fn forget(&mut self, scope: &str) {
        self.tokens.remove(scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_token_is_renewed_a_fifth_of_its_life_before_it_expires() {
        let t0 = Instant::now();
        let token = CachedToken::new(Secret::new("tok-one"), t0, Some(secs(100)));
        assert!(token.fresh(t0));
        assert!(token.fresh(t0 + secs(79)));
        assert!(!token.fresh(t0 + secs(80)));
    }

    #[test]
    fn long_tokens_keep_a_margin_of_thirty_seconds_and_missing_lifetimes_are_sixty() {
        let t0 = Instant::now();
        let long = CachedToken::new(Secret::new("tok-long"), t0, Some(secs(3600)));
        assert_eq!(long.renew_at, t0 + secs(3570));
        let unknown = CachedToken::new(Secret::new("tok-unknown"), t0, None);
        assert_eq!(unknown.renew_at, t0 + secs(48));
        let zero = CachedToken::new(Secret::new("tok-zero"), t0, Some(Duration::ZERO));
        assert_eq!(zero.renew_at, t0 + secs(48));
    }

    #[test]
    fn the_cache_hands_out_fresh_tokens_by_scope_only() {
        let t0 = Instant::now();
        let mut cache = TokenCache::default();
        cache.insert(
            "repository:a:pull",
            CachedToken::new(Secret::new("tok-a"), t0, Some(secs(10))),
        );
        assert_eq!(
            cache.get("repository:a:pull", t0).map(Secret::expose),
            Some("tok-a")
        );
        assert!(cache.get("repository:b:pull", t0).is_none());
        assert!(cache.get("repository:a:pull", t0 + secs(9)).is_none());
        cache.forget("repository:a:pull");
        assert!(cache.get("repository:a:pull", t0).is_none());
    }
}
