//! One worker VM's mint logic, free of proxy-wasm: keys (JWKS in shared data) → verify
//! (cached) → authorize → signed STS request → RGW's answer → the client's reply. What a request
//! does over time (parking, callouts, clients that leave) is [`crate::gateway::lifecycle`]'s business.
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::rc::Rc;

use crate::config::{Config, JwksSource};
use crate::crypto::sigv4::SigningKeyCache;
use crate::error::{Error, Reply};
use crate::gateway::parking::Ask;
use crate::gateway::route::Endpoint;
use crate::host::Callout;
use crate::policy::authorize::{authorize, Scope};
use crate::sts::credentials;
use crate::sts::request::{self, AssumeRoleParams};
use crate::sts::response::{self, AssumedCredentials, StsError, MAX_BODY_BYTES};
use crate::sts::session::session_name;
use crate::token::cache::{digest, TokenCache, TokenDigest};
use crate::token::jwks::KeySet;
use crate::token::jwks_store::{JwksStore, SharedStore, Timing};
use crate::token::verify::{check_claims, verify, Policy, Source, Verified, VerifyError};

/// Whether a request whose `kid` is unknown may wait for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Allowed,
    /// It already waited. `keys_changed`: a fetch finished meanwhile, so a kid still unknown
    /// is remembered as absent (refused at once until the published keys change).
    Over {
        keys_changed: bool,
    },
}

/// What became of one verification pass of a token request.
#[derive(Debug)]
pub enum Step {
    Reply(Reply),
    /// The `kid` is unknown and a JWKS fetch of `source` (the token's issuer's) may still
    /// publish it: park the request until that source's keys change or
    /// [`Worker::max_wait_ms`] ends, then call [`Worker::mint`] again with [`Wait::Over`].
    AwaitKeys {
        source: usize,
    },
    /// Send this callout to RGW.
    CallSts(StsCall),
}

/// Who an STS call is for. The signed callout itself is built by [`Worker::sts_callout`] only
/// when RGW is really called: a reused or coalesced answer skips the signing.
#[derive(Debug)]
pub struct StsCall {
    /// Who the credentials are for and how they are scoped ([`reuse_key`]), when reuse is on
    /// and the token names its subject.
    pub reuse_key: Option<TokenDigest>,
    /// Reuse is on but the token has no `sub`: no reuse, no coalescing (counted).
    pub unshared: bool,
    /// Who asked, for the mint log line (never a secret).
    pub caller: String,
    pub session: String,
    pub tenant: Option<String>,
}

/// How an RGW callout ended.
pub enum StsAnswer<'a> {
    /// `dispatch_http_call` itself failed (unknown cluster, bad headers).
    DispatchFailed,
    /// No `:status` came back: the connection was reset.
    Reset,
    Answered {
        status: u16,
        body: &'a [u8],
        body_size: usize,
    },
}

pub struct Worker {
    pub config: Rc<Config>,
    policy: Policy,
    pub sources: Vec<Source>,
    source_cfgs: Vec<JwksSource>,
    source_keys: Vec<String>,
    versions: Vec<u64>,
    cache: TokenCache,
    signing: SigningKeyCache,
    seq: u64,
    /// kids a completed fetch did not publish, with the key set they were missing from and
    /// until when (seconds): one wait per kid per change of the published keys, then an
    /// immediate 401 (forged kids cannot hold requests or trigger refetches). The memory lasts
    /// `absent_ttl_s` (the longest `min_refetch_seconds`): a fetch that served stale keys
    /// after a rotation refuses the new kid for seconds, not until the next refresh.
    absent_kids: HashMap<TokenDigest, (u64, u64)>,
    absent_ttl_s: u64,
    /// Random per VM (WASI `random_get` via std's hasher seed): keeps session-name suffixes of
    /// different workers apart even for requests in the same millisecond.
    nonce: u64,
}

/// Bound of the absent-kid memory: entries are digests, so this is also its bound in bytes
/// (about 64 KiB).
const MAX_ABSENT_KIDS: usize = 1024;

impl Worker {
    pub fn new(config: Config) -> Worker {
        let source_cfgs: Vec<JwksSource> = config.jwks_sources().into_iter().cloned().collect();
        let sources = (0..source_cfgs.len())
            .map(|i| Source {
                issuers: config
                    .issuers_of_source(i)
                    .into_iter()
                    .collect::<HashSet<_>>(),
                keys: None,
            })
            .collect();
        let source_keys = source_cfgs.iter().map(shared_key).collect();
        Worker {
            policy: Policy {
                audience: config.audience.clone(),
                clock_skew_seconds: config.clock_skew_seconds,
                algorithms: config.algorithms.clone(),
                max_token_bytes: config.max_token_bytes,
                max_lifetime_seconds: config.max_token_lifetime_seconds,
                authorized_parties: config.authorized_parties.clone(),
            },
            versions: vec![0; source_cfgs.len()],
            cache: TokenCache::new(config.token_cache_entries, config.token_cache_bytes),
            signing: SigningKeyCache::new(),
            seq: 0,
            absent_kids: HashMap::new(),
            absent_ttl_s: source_cfgs
                .iter()
                .map(|s| s.min_refetch_seconds)
                .max()
                .unwrap_or(5),
            nonce: std::collections::hash_map::RandomState::new().hash_one(0x5354_5347u64),
            config: Rc::new(config),
            sources,
            source_cfgs,
            source_keys,
        }
    }

    /// Random per VM: tells this VM's entries in shared data apart from other VMs'.
    pub fn vm_id(&self) -> u64 {
        self.nonce
    }

    /// The version of each source's keys, by source: a parked request compares its own
    /// source's (another issuer's new keys cannot publish its `kid`).
    pub fn keys_versions(&self) -> &[u64] {
        &self.versions
    }

    /// How long a parked request may wait: until the refetch budget renews and that fetch
    /// ends (the longest `min_refetch` + lease of any source).
    pub fn max_wait_ms(&self) -> u64 {
        (0..self.source_count())
            .map(|i| {
                let t = self.timing(i);
                t.min_refetch_ms.saturating_add(t.lease_ms)
            })
            .max()
            .unwrap_or(1000)
    }

    /// Entries in the absent-kid memory (for the property tests).
    pub fn absent_kids(&self) -> usize {
        self.absent_kids.len()
    }

    /// Entries in the verified-token cache and their bytes (for the property tests).
    pub fn token_cache_usage(&self) -> (usize, usize) {
        (self.cache.len(), self.cache.bytes())
    }

    fn remember_absent(&mut self, kid: TokenDigest, content: u64, now_s: u64) {
        if self.absent_kids.len() >= MAX_ABSENT_KIDS {
            self.absent_kids
                .retain(|_, (c, until)| *c == content && now_s < *until);
            if self.absent_kids.len() >= MAX_ABSENT_KIDS {
                self.absent_kids.clear();
            }
        }
        let until = now_s.saturating_add(self.absent_ttl_s);
        self.absent_kids.insert(kid, (content, until));
    }

    /// `kid` was found missing from these very keys, within the last `absent_ttl_s`.
    fn known_absent(&self, kid: &TokenDigest, content: u64, now_s: u64) -> bool {
        self.absent_kids
            .get(kid)
            .is_some_and(|(c, until)| *c == content && now_s < *until)
    }

    /// For parked requests: of the sources they wait for, those whose refetch this VM may run
    /// now (claimed).
    pub fn claim_refetches<S: SharedStore>(
        &self,
        store: &S,
        now_ms: u64,
        waited_for: &[usize],
    ) -> Vec<usize> {
        waited_for
            .iter()
            .copied()
            .filter(|&i| i < self.source_count())
            .filter(|&i| self.store(store, i).claim_refetch(now_ms, &self.timing(i)))
            .collect()
    }

    pub fn source_count(&self) -> usize {
        self.source_cfgs.len()
    }

    fn store<'a, S: SharedStore>(&'a self, store: &'a S, i: usize) -> JwksStore<'a, S> {
        JwksStore {
            store,
            key: self
                .source_keys
                .get(i)
                .map(String::as_str)
                .unwrap_or("sts-gateway.jwks"),
        }
    }

    fn timing(&self, i: usize) -> Timing {
        let c = self.source_cfgs.get(i);
        let secs = |f: fn(&JwksSource) -> u64| c.map(f).unwrap_or(1).saturating_mul(1000);
        Timing {
            refresh_ms: secs(|c| c.refresh_seconds),
            min_refetch_ms: secs(|c| c.min_refetch_seconds),
            retry_ms: secs(|c| c.retry_seconds),
            lease_ms: c.map(|c| c.timeout_ms).unwrap_or(1000).saturating_add(1000),
        }
    }

    /// Picks up JWKS documents other VMs fetched; parses only when a version moved.
    /// `true` when some source changed.
    pub fn sync_keys<S: SharedStore>(&mut self, store: &S) -> bool {
        let mut changed = false;
        for i in 0..self.source_count() {
            let known = self.versions.get(i).copied().unwrap_or(0);
            if let Some((version, doc)) = self.store(store, i).load_if_newer(known) {
                self.install(i, version, &doc);
                changed = true;
            }
        }
        changed
    }

    fn install(&mut self, i: usize, version: u64, doc: &[u8]) {
        match KeySet::parse(doc, &self.config.algorithms) {
            Ok(set) => self.set_keys(i, set, version),
            Err(_) => {
                if let Some(v) = self.versions.get_mut(i) {
                    *v = version;
                }
            }
        }
    }

    fn set_keys(&mut self, i: usize, set: KeySet, version: u64) {
        if let Some(s) = self.sources.get_mut(i) {
            s.keys = Some(Rc::new(set));
        }
        if let Some(v) = self.versions.get_mut(i) {
            *v = version;
        }
    }

    /// Identifies the published keys themselves (not how often they were fetched): a refetch
    /// that returns the same keys leaves it unchanged.
    fn keys_content(&self) -> u64 {
        self.sources
            .iter()
            .filter_map(|s| s.keys.as_deref())
            .flat_map(|set| set.keys.iter())
            .fold(0u64, |acc, k| {
                let mut word = [0u8; 8];
                word.copy_from_slice(k.fingerprint.get(..8).unwrap_or(&[0; 8]));
                acc.wrapping_add(u64::from_le_bytes(word)).rotate_left(1)
            })
    }

    /// Sources whose periodic fetch is due and now claimed by this VM.
    pub fn claim_due_fetches<S: SharedStore>(&self, store: &S, now_ms: u64) -> Vec<usize> {
        (0..self.source_count())
            .filter(|&i| self.store(store, i).claim_due(now_ms, &self.timing(i)))
            .collect()
    }

    pub fn jwks_callout(&self, i: usize) -> Option<Callout> {
        let c = self.source_cfgs.get(i)?;
        Some(Callout {
            cluster: c.cluster.clone(),
            headers: vec![
                (":method", "GET".into()),
                (":path", c.path.clone()),
                (":authority", c.authority.clone()),
                ("accept", "application/json".into()),
            ],
            body: None,
            timeout_ms: c.timeout_ms,
        })
    }

    pub fn jwks_max_bytes(&self, i: usize) -> usize {
        self.source_cfgs.get(i).map(|c| c.max_bytes).unwrap_or(0)
    }

    /// Stores a fetched JWKS for every VM, or records the failure (the last good keys stay).
    /// `body` is `None` when it was larger than the configured limit.
    pub fn jwks_fetched<S: SharedStore>(
        &mut self,
        store: &S,
        i: usize,
        status: Option<u16>,
        body: Option<&[u8]>,
        now_ms: u64,
    ) -> Result<usize, &'static str> {
        let t = self.timing(i);
        let outcome = match (status, body) {
            (None, _) => Err("no answer (reset or unknown cluster)"),
            (Some(200), None) => Err("document larger than jwks.max_bytes"),
            (Some(200), Some(doc)) => match KeySet::parse(doc, &self.config.algorithms) {
                Ok(set) => Ok((set, doc)),
                Err(e) => Err(e.reason()),
            },
            (Some(504), _) => Err("timed out"),
            (Some(_), _) => Err("HTTP error status"),
        };
        match outcome {
            Ok((set, doc)) => {
                let count = set.keys.len();
                let version = self.store(store, i).record_success(doc, now_ms, &t);
                self.set_keys(i, set, version);
                Ok(count)
            }
            Err(reason) => {
                self.store(store, i).record_failure(now_ms, &t);
                Err(reason)
            }
        }
    }

    /// Token → keys → verify → authorize → signed STS call. A parked request is verified again
    /// with [`Wait::Over`], so a request waits for keys at most once.
    pub fn mint<S: SharedStore>(
        &mut self,
        store: &S,
        ask: &Ask,
        now_ms: u64,
        unique: u64,
        wait: Wait,
    ) -> Step {
        match self.try_mint(store, ask, now_ms, unique, wait) {
            Ok(step) => step,
            Err(e) => Step::Reply(self.reply(&e)),
        }
    }

    fn try_mint<S: SharedStore>(
        &mut self,
        store: &S,
        ask: &Ask,
        now_ms: u64,
        unique: u64,
        wait: Wait,
    ) -> Result<Step, Error> {
        let now = now_ms / 1000;
        // Keys are synced from shared data on every tick of the root context; a request reads
        // shared data itself only when its key is missing (new VM, rotation, first fetch).
        let mut outcome = self.verify_cached(&ask.token, now);
        if matches!(
            outcome,
            Err(VerifyError::UnknownKid { .. } | VerifyError::Rejected(Error::KeysUnavailable))
        ) && self.sync_keys(store)
        {
            outcome = self.verify_cached(&ask.token, now);
        }
        let verified = match outcome {
            Ok(v) => v,
            Err(VerifyError::Rejected(e)) => return Err(e),
            Err(VerifyError::UnknownKid { kid, source }) => {
                let kid = digest(&kid);
                let content = self.keys_content();
                let refused = Err(Error::InvalidToken(
                    "signing key (kid) not published by the issuer",
                ));
                match wait {
                    // A fetch finished since this kid was first seen and did not publish it,
                    // and the published keys have not changed since.
                    _ if self.known_absent(&kid, content, now) => return refused,
                    Wait::Over { keys_changed } => {
                        if keys_changed {
                            self.remember_absent(kid, content, now);
                        }
                        return refused;
                    }
                    Wait::Allowed => {}
                }
                // Wait for the fetch in flight, or for the root's refetch once the budget
                // allows, so a genuinely rotated key is never refused.
                return Ok(Step::AwaitKeys { source });
            }
        };
        let scope = authorize(
            &verified.claims,
            &self.config.rules,
            &self.config.tenants,
            ask.tenant.as_deref(),
        )?;
        Ok(Step::CallSts(self.sts_call(&verified, scope, unique)))
    }

    fn verify_cached(&mut self, token: &str, now: u64) -> Result<Verified, VerifyError> {
        if let Some(hit) = self.cache.get(token, now, &self.sources) {
            let issuers = self
                .sources
                .get(hit.source)
                .map(|s| &s.issuers)
                .ok_or(Error::InvalidToken("issuer not accepted"))?;
            check_claims(&hit.claims, now, issuers, &self.policy)?;
            return Ok(hit);
        }
        let verified = verify(token, now, &self.sources, &self.policy)?;
        self.cache.insert(token, verified.clone());
        Ok(verified)
    }

    fn sts_call(&mut self, verified: &Verified, scope: Scope, unique: u64) -> StsCall {
        let tenant = match &scope {
            Scope::Tenant(t) => Some(t.as_str()),
            Scope::Full => None,
        };
        self.seq = self.seq.wrapping_add(1);
        let claims = &verified.claims;
        let username = claims
            .custom
            .get("preferred_username")
            .and_then(|v| v.as_str());
        let session = session_name(
            username,
            claims.subject.as_deref(),
            tenant,
            unique ^ self.nonce ^ self.seq.rotate_left(40),
        );
        let subject = claims.subject.as_deref().filter(|s| !s.is_empty());
        let reuse_key = match (self.config.reuse, subject) {
            (Some(_), Some(sub)) => Some(reuse_key(
                claims.issuer.as_deref().unwrap_or_default(),
                sub,
                &scope,
            )),
            _ => None,
        };
        StsCall {
            reuse_key,
            unshared: self.config.reuse.is_some() && subject.is_none(),
            caller: username
                .or(claims.subject.as_deref())
                .unwrap_or("unknown")
                .chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect(),
            session,
            tenant: tenant.map(str::to_string),
        }
    }

    /// The signed AssumeRole callout for `call` (SigV4 at `now`, seconds; the tenant's session
    /// policy when scoped).
    pub fn sts_callout(&mut self, call: &StsCall, now: u64) -> Callout {
        let tenant_policy = call.tenant.as_deref().map(|t| {
            self.config
                .tenants
                .policy_for(t)
                .unwrap_or_else(|| crate::policy::scope::DENY_ALL.to_string())
        });
        let rgw = &self.config.rgw;
        let params = AssumeRoleParams {
            authority: &rgw.authority,
            region: &rgw.region,
            service: &rgw.service,
            access_key_id: rgw.access_key_id(),
            role_arn: &rgw.role_arn,
            role_session_name: &call.session,
            duration_seconds: rgw.duration_seconds,
            policy: tenant_policy.as_deref().or(rgw.policy.as_deref()),
        };
        let request = request::build(&params, &mut self.signing, rgw.secret_access_key(), now);
        Callout {
            cluster: rgw.cluster.clone(),
            headers: request.headers,
            body: Some(request.body.into_bytes()),
            timeout_ms: rgw.timeout_ms,
        }
    }

    /// RGW's answer (or its absence) → the token route's answer.
    #[cfg(test)]
    fn sts_reply(&self, answer: StsAnswer<'_>) -> Result<Reply, Error> {
        self.sts_reply_for(Endpoint::Token, answer)
    }

    /// RGW's answer (or its absence) → the answer of the endpoint the request came through:
    /// `PUT token`'s 201 or `GET credentials`'s 200. Errors are the same for both.
    #[cfg(test)]
    fn sts_reply_for(&self, endpoint: Endpoint, answer: StsAnswer<'_>) -> Result<Reply, Error> {
        self.sts_credentials(answer)
            .and_then(|creds| self.credentials_reply_for(endpoint, &creds))
    }

    /// RGW's answer (or its absence) → the credentials, or why there are none.
    pub fn sts_credentials(&self, answer: StsAnswer<'_>) -> Result<AssumedCredentials, Error> {
        let (status, body, body_size) = match answer {
            StsAnswer::DispatchFailed => return Err(Error::RgwUnavailable),
            StsAnswer::Reset => return Err(Error::RgwBadAnswer("connection reset")),
            StsAnswer::Answered {
                status,
                body,
                body_size,
            } => (status, body, body_size),
        };
        if body_size > MAX_BODY_BYTES {
            return Err(Error::RgwBadAnswer("answer too large"));
        }
        match response::parse(status, body) {
            Ok(c) => Ok(c),
            // Envoy itself answers 503 (no upstream) and 504 (timeout) without RGW's XML.
            Err(StsError::Rgw { status: 503, code }) if code == response::UNKNOWN_CODE => {
                Err(Error::RgwUnavailable)
            }
            Err(StsError::Rgw { status: 504, code }) if code == response::UNKNOWN_CODE => {
                Err(Error::RgwTimeout)
            }
            Err(StsError::Rgw { status, code }) => Err(Error::Rgw { status, code }),
            Err(StsError::Malformed(why)) => Err(Error::RgwBadAnswer(why)),
        }
    }

    /// The answer for these credentials of the endpoint the request came through: `PUT token`'s
    /// 201 or `GET credentials`'s 200.
    pub fn credentials_reply_for(
        &self,
        endpoint: Endpoint,
        creds: &AssumedCredentials,
    ) -> Result<Reply, Error> {
        let (status, body) = match endpoint {
            Endpoint::Token => (
                201,
                credentials::response_body(creds, &self.config.rgw.endpoint_url),
            ),
            Endpoint::Credentials => (200, credentials::container_body(creds)),
        };
        let body =
            body.map_err(|_| Error::RgwBadAnswer("Expiration is not an RFC 3339 UTC time"))?;
        Ok(Reply {
            status,
            reason: "minted",
            headers: vec![
                ("content-type", "application/json".into()),
                ("cache-control", "no-store".into()),
                ("pragma", "no-cache".into()),
            ],
            body: body.into_bytes(),
        })
    }

    pub fn reply(&self, e: &Error) -> Reply {
        e.reply(&self.config.realm)
    }

    #[cfg(test)]
    fn signing_key_derivations(&self) -> u64 {
        self.signing.derivations()
    }
}

/// The reuse key: the caller (issuer and a present subject) and how the answer is scoped
/// (full, or which tenant). Length-prefixed, so no two different callers share a key whatever
/// their strings hold.
pub fn reuse_key(issuer: &str, subject: &str, scope: &Scope) -> TokenDigest {
    let scope = match scope {
        Scope::Full => "full".to_string(),
        Scope::Tenant(t) => format!("tenant:{t}"),
    };
    digest(&format!(
        "{}:{issuer}{}:{subject}{}:{scope}",
        issuer.len(),
        subject.len(),
        scope.len()
    ))
}

/// Shared-data key of a JWKS source: distinct per source, stable across config reloads.
fn shared_key(s: &JwksSource) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{}\n{}\n{}", s.cluster, s.authority, s.path).as_bytes());
    let hex: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sts-gateway.jwks.{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{claims, jwk_json, keypairs, sign, ISS, NOW};
    use crate::token::jwks_store::MemoryStore;
    use serde_json::json;

    const NOW_MS: u64 = NOW * 1000;

    fn config() -> Config {
        let v = json!({
            "issuers": [{"issuer": ISS, "jwks": {"cluster": "keycloak", "authority": "kc", "path": "/jwks"}}],
            "rgw": {"cluster": "rgw", "authority": "rgw.local:8080", "endpoint_url": "http://rgw.local:8080",
                    "role_arn": "arn:aws:iam:::user/STS", "access_key_id": "AKIDSTS", "secret_access_key": "SECRETSTS"}
        });
        Config::parse(v.to_string().as_bytes(), &|_| None).unwrap()
    }

    fn jwks_doc(kids: &[(usize, &str)]) -> Vec<u8> {
        let keys: Vec<_> = kids
            .iter()
            .map(|(i, kid)| jwk_json(&keypairs()[*i], kid, "sig", "RS256"))
            .collect();
        json!({"keys": keys}).to_string().into_bytes()
    }

    /// A worker whose keys another VM already fetched into shared data.
    fn worker_with_keys(shared: &MemoryStore) -> Worker {
        let mut w = Worker::new(config());
        assert!(w.claim_due_fetches(shared, NOW_MS).contains(&0));
        w.jwks_fetched(
            shared,
            0,
            Some(200),
            Some(&jwks_doc(&[(0, "sig-1")])),
            NOW_MS,
        )
        .unwrap();
        Worker::new(config())
    }

    pub(crate) fn ask(token: &str) -> Ask {
        Ask {
            token: token.to_string(),
            tenant: None,
            request_id: "-".into(),
            endpoint: Endpoint::Token,
        }
    }

    fn token_for(user: &str, roles: &[&str], kid: &str, key: usize) -> String {
        sign(
            json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
            claims(
                json!({"preferred_username": user, "resource_access": {"shasta": {"roles": roles}}}),
            ),
            key,
        )
    }

    fn status(step: &Step) -> u32 {
        match step {
            Step::Reply(a) => a.status,
            Step::CallSts(_) => 0,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn admin_gets_a_signed_sts_call() {
        let shared = MemoryStore::default();
        let mut w = worker_with_keys(&shared);
        let t = token_for("admin", &["admin"], "sig-1", 0);
        let step = w.mint(&shared, &ask(&t), NOW_MS, 7, Wait::Allowed);
        let Step::CallSts(call) = step else {
            panic!("{step:?}")
        };
        let callout = w.sts_callout(&call, NOW);
        assert_eq!(callout.cluster, "rgw");
        assert_eq!(call.caller, "admin");
        assert!(call.session.starts_with("admin-"), "{}", call.session);
        let body = String::from_utf8(callout.body.clone().unwrap()).unwrap();
        assert!(body.contains("Action=AssumeRole"));
        assert!(body.contains(&format!("RoleSessionName={}", call.session)));
        assert!(body.contains("DurationSeconds=3600"));
        let auth = &callout
            .headers
            .iter()
            .find(|(n, _)| *n == "authorization")
            .unwrap()
            .1;
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDSTS/"));
        assert!(!format!("{call:?} {callout:?}").contains("SECRETSTS"));
    }

    #[test]
    fn reuse_key_names_caller_and_scope() {
        let blue = Scope::Tenant("blue".into());
        let k = reuse_key("iss", "sub", &Scope::Full);
        assert_eq!(k, reuse_key("iss", "sub", &Scope::Full));
        for other in [
            reuse_key("iss2", "sub", &Scope::Full),
            reuse_key("iss", "sub2", &Scope::Full),
            reuse_key("iss", "sub", &blue),
            // Strings that a separator-joined key would confuse.
            reuse_key("iss\nsub", "", &Scope::Full),
            reuse_key("is", "s\nsub", &Scope::Full),
        ] {
            assert_ne!(k, other);
        }
        assert_ne!(
            reuse_key("a", "b:c", &Scope::Full),
            reuse_key("a", "b", &Scope::Tenant("c".into()))
        );
        // Through the worker: no `sub` (or an empty one), no key; reuse off, no key.
        let mut v: serde_json::Value = json!({
            "issuers": [{"issuer": ISS, "jwks": {"cluster": "keycloak", "authority": "kc", "path": "/jwks"}}],
            "rgw": {"cluster": "rgw", "authority": "rgw.local:8080", "endpoint_url": "http://rgw.local:8080",
                    "role_arn": "arn:aws:iam:::user/STS", "access_key_id": "AKIDSTS", "secret_access_key": "SECRETSTS"},
            "reuse": {"min_remaining_seconds": 600}
        });
        let shared = MemoryStore::default();
        let _ = worker_with_keys(&shared);
        let call_for = |v: &serde_json::Value, extra: serde_json::Value| {
            let mut w = Worker::new(Config::parse(v.to_string().as_bytes(), &|_| None).unwrap());
            let t = sign(
                json!({"alg": "RS256", "typ": "JWT", "kid": "sig-1"}),
                claims(extra),
                0,
            );
            match w.mint(&shared, &ask(&t), NOW_MS, 1, Wait::Allowed) {
                Step::CallSts(c) => (c.reuse_key, c.unshared),
                other => panic!("{other:?}"),
            }
        };
        let (key, unshared) = call_for(&v, json!({}));
        assert!(key.is_some() && !unshared);
        for extra in [json!({"sub": null}), json!({"sub": ""})] {
            assert_eq!(call_for(&v, extra), (None, true));
        }
        v.as_object_mut().unwrap().remove("reuse");
        assert_eq!(call_for(&v, json!({"sub": null})), (None, false));
    }

    #[test]
    fn denials() {
        let shared = MemoryStore::default();
        let mut w = worker_with_keys(&shared);
        let put = |t: &str| ask(t);
        let user = token_for("user", &["user"], "sig-1", 0);
        assert_eq!(
            status(&w.mint(&shared, &put(&user), NOW_MS, 1, Wait::Allowed)),
            403
        );
        let admin = token_for("admin", &["admin"], "sig-1", 0);
        let mut h = put(&admin);
        h.tenant = Some("Not_A_Label".into());
        assert_eq!(status(&w.mint(&shared, &h, NOW_MS, 1, Wait::Allowed)), 403);
        h.tenant = Some("vcluster-blue".into());
        assert_eq!(status(&w.mint(&shared, &h, NOW_MS, 1, Wait::Allowed)), 0);
        // Cached now; still expires on time.
        assert_eq!(
            status(&w.mint(&shared, &put(&admin), NOW_MS + 3_661_000, 1, Wait::Allowed)),
            401
        );
        let forged = token_for("admin", &["admin"], "sig-1", 1);
        assert_eq!(
            status(&w.mint(&shared, &put(&forged), NOW_MS, 1, Wait::Allowed)),
            401
        );
    }

    #[test]
    fn no_keys_yet_is_503() {
        let shared = MemoryStore::default();
        let mut w = Worker::new(config());
        let t = token_for("admin", &["admin"], "sig-1", 0);
        let step = w.mint(&shared, &ask(&t), NOW_MS, 1, Wait::Allowed);
        let Step::Reply(a) = step else { panic!() };
        assert_eq!(a.status, 503);
        assert!(a.headers.iter().any(|(n, _)| *n == "retry-after"));
    }

    #[test]
    fn unknown_kid_refetches_once_then_verifies() {
        let shared = MemoryStore::default();
        let mut w = worker_with_keys(&shared);
        let rotated = token_for("admin", &["admin"], "sig-2", 1);
        let h = ask(&rotated);
        let later = NOW_MS + 31_000;
        let step = w.mint(&shared, &h, later, 1, Wait::Allowed);
        assert!(matches!(step, Step::AwaitKeys { source: 0 }), "{step:?}");
        // The root claims the refetch once for every waiting request.
        assert_eq!(w.claim_refetches(&shared, later, &[0]), vec![0]);
        assert!(
            w.claim_refetches(&shared, later, &[0]).is_empty(),
            "lease held"
        );
        // A second request meanwhile waits for that fetch too.
        assert!(matches!(
            w.mint(&shared, &h, later, 1, Wait::Allowed),
            Step::AwaitKeys { .. }
        ));
        // Waiting ends in a verdict, never another wait or fetch.
        assert_eq!(
            status(&w.mint(&shared, &h, later, 1, Wait::Over { keys_changed: true })),
            401
        );
        let generation = w.keys_versions().to_vec();
        w.jwks_fetched(
            &shared,
            0,
            Some(200),
            Some(&jwks_doc(&[(1, "sig-2")])),
            later,
        )
        .unwrap();
        assert_ne!(
            w.keys_versions(),
            generation,
            "parked requests see the change"
        );
        assert_eq!(
            status(&w.mint(&shared, &h, later, 1, Wait::Over { keys_changed: true })),
            0
        );
        // The old key left the JWKS: no refetch right away (budget spent), the request waits
        // for the next one and is then refused.
        let old = token_for("admin", &["admin"], "sig-1", 0);
        let h_old = ask(&old);
        assert!(matches!(
            w.mint(&shared, &h_old, later + 1, 1, Wait::Allowed),
            Step::AwaitKeys { .. }
        ));
        assert!(w.claim_refetches(&shared, later + 1, &[0]).is_empty());
        assert_eq!(
            w.claim_refetches(&shared, later + 5_000, &[0]),
            vec![0],
            "budget renewed"
        );
        assert_eq!(
            status(&w.mint(
                &shared,
                &h_old,
                later + 5_001,
                1,
                Wait::Over { keys_changed: true }
            )),
            401
        );
        // Another worker picks the new keys up from shared data.
        let mut other = Worker::new(config());
        assert_eq!(
            status(&other.mint(&shared, &h, later + 2, 1, Wait::Allowed)),
            0
        );
    }

    #[test]
    fn forged_kid_waits_once_per_key_generation() {
        let shared = MemoryStore::default();
        let mut w = worker_with_keys(&shared);
        let forged = token_for("admin", &["admin"], "forged", 1);
        let h = ask(&forged);
        let t = NOW_MS + 10_000;
        // Budget available: the request waits, the root refetches; the JWKS comes back
        // without the kid.
        assert!(matches!(
            w.mint(&shared, &h, t, 1, Wait::Allowed),
            Step::AwaitKeys { .. }
        ));
        assert_eq!(w.claim_refetches(&shared, t, &[0]), vec![0]);
        w.jwks_fetched(&shared, 0, Some(200), Some(&jwks_doc(&[(0, "sig-1")])), t)
            .unwrap();
        assert_eq!(
            status(&w.mint(&shared, &h, t, 1, Wait::Over { keys_changed: true })),
            401
        );
        // The same kid again: refused at once, no wait, no fetch.
        assert_eq!(status(&w.mint(&shared, &h, t + 1, 1, Wait::Allowed)), 401);
        // Another unseen kid while the budget is spent waits for the next fetch instead.
        let other = token_for("admin", &["admin"], "rotated-in", 1);
        let h2 = ask(&other);
        assert!(matches!(
            w.mint(&shared, &h2, t + 2, 1, Wait::Allowed),
            Step::AwaitKeys { .. }
        ));
        // The forged kid gets no other wait while it is remembered (min_refetch_seconds, 5 s:
        // stale keys after a real rotation must not refuse the new kid for longer)...
        assert_eq!(
            status(&w.mint(&shared, &h, t + 4_002, 1, Wait::Allowed)),
            401
        );
        // ...and past that window it may wait once more (parking and the refetch budget still
        // bound what a flood of forged kids can cost); a refetch with the same keys refuses it.
        assert!(matches!(
            w.mint(&shared, &h, t + 5_002, 1, Wait::Allowed),
            Step::AwaitKeys { .. }
        ));
        assert!(!w.claim_refetches(&shared, t + 5_003, &[0]).is_empty());
        let same = jwks_doc(&[(0, "sig-1")]);
        w.jwks_fetched(&shared, 0, Some(200), Some(&same), t + 5_004)
            .unwrap();
        assert_eq!(
            status(&w.mint(&shared, &h, t + 5_005, 1, Wait::Over { keys_changed: true })),
            401
        );
        // Once the published keys change, it gets one more chance (it might be the new key).
        assert!(!w.claim_refetches(&shared, t + 11_002, &[0]).is_empty());
        let rotated = jwks_doc(&[(0, "sig-1"), (1, "rotated-in")]);
        w.jwks_fetched(&shared, 0, Some(200), Some(&rotated), t + 11_003)
            .unwrap();
        let resumed = w.mint(
            &shared,
            &h2,
            t + 11_004,
            1,
            Wait::Over { keys_changed: true },
        );
        assert_eq!(status(&resumed), 0, "rotated-in key works");
        let again = w.mint(&shared, &h, t + 11_005, 1, Wait::Allowed);
        assert!(!matches!(again, Step::Reply(_)), "{again:?}");
    }

    #[test]
    fn failed_fetch_keeps_last_good_keys() {
        let shared = MemoryStore::default();
        let mut w = worker_with_keys(&shared);
        assert!(w
            .jwks_fetched(&shared, 0, Some(500), Some(b"oops"), NOW_MS + 1)
            .is_err());
        assert!(w
            .jwks_fetched(&shared, 0, Some(200), Some(b"<html>"), NOW_MS + 2)
            .is_err());
        assert!(w
            .jwks_fetched(&shared, 0, Some(200), None, NOW_MS + 3)
            .is_err());
        assert!(w.jwks_fetched(&shared, 0, None, None, NOW_MS + 4).is_err());
        let t = token_for("admin", &["admin"], "sig-1", 0);
        let h = ask(&t);
        assert_eq!(
            status(&Worker::new(config()).mint(&shared, &h, NOW_MS + 5, 1, Wait::Allowed)),
            0
        );
        assert_eq!(
            status(&w.mint(&shared, &h, NOW_MS + 5, 1, Wait::Allowed)),
            0
        );
    }

    #[test]
    fn signing_key_derived_once_per_day() {
        let shared = MemoryStore::default();
        let mut w = worker_with_keys(&shared);
        let h = ask(&token_for("admin", &["admin"], "sig-1", 0));
        for i in 0..50 {
            let Step::CallSts(call) = w.mint(&shared, &h, NOW_MS + i * 10, i, Wait::Allowed) else {
                panic!("no STS call");
            };
            w.sts_callout(&call, NOW + i / 100);
        }
        assert_eq!(w.signing_key_derivations(), 1);
        // The next day needs a new one.
        let Step::CallSts(call) = w.mint(&shared, &h, NOW_MS, 99, Wait::Allowed) else {
            panic!("no STS call");
        };
        w.sts_callout(&call, NOW + 86_400);
        assert_eq!(w.signing_key_derivations(), 2);
    }

    /// `{:?}` of a step never shows the 201's secret key or session token (its reply's body is
    /// redacted by `Reply`'s Debug), nor, for an STS call, the caller's bearer token.
    #[test]
    fn step_debug_hides_secrets() {
        let shared = MemoryStore::default();
        let mut w = worker_with_keys(&shared);
        let ok = w
            .sts_reply(StsAnswer::Answered {
                status: 200,
                body: OK_XML.as_bytes(),
                body_size: OK_XML.len(),
            })
            .unwrap();
        // Positive control: the 201 body holds both secrets and the check finds them there.
        let body = String::from_utf8_lossy(&ok.body).into_owned();
        assert!(
            body.contains("EJBVsecret") && body.contains("7MSXtoken"),
            "{body}"
        );
        let step = Step::Reply(ok);
        let shown = format!("{step:?}");
        assert!(!shown.contains("EJBVsecret"), "{shown}");
        assert!(!shown.contains("7MSXtoken"), "{shown}");
        assert!(
            shown.contains("201") && shown.contains("redacted"),
            "{shown}"
        );
        let t = token_for("admin", &["admin"], "sig-1", 0);
        let signature = t.rsplit('.').next().unwrap();
        let step = w.mint(&shared, &ask(&t), NOW_MS, 7, Wait::Allowed);
        let shown = format!("{step:?}");
        assert!(
            shown.starts_with("CallSts") && shown.contains("admin"),
            "{shown}"
        );
        assert!(!shown.contains(signature), "{shown}");
    }

    const OK_XML: &str = "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>nEffVHB6D9aV8oNWipJ</AccessKeyId><Expiration>2026-11-30T00:57:59.260716106Z</Expiration><SecretAccessKey>EJBVsecret</SecretAccessKey><SessionToken>7MSXtoken</SessionToken></Credentials></AssumeRoleResult></AssumeRoleResponse>";

    #[test]
    fn rgw_answers() {
        let w = Worker::new(config());
        let ok = w
            .sts_reply(StsAnswer::Answered {
                status: 200,
                body: OK_XML.as_bytes(),
                body_size: OK_XML.len(),
            })
            .unwrap();
        assert_eq!(ok.status, 201);
        assert_eq!(
            String::from_utf8(ok.body).unwrap(),
            "{\"Credentials\": {\"AccessKeyId\": \"nEffVHB6D9aV8oNWipJ\", \"EndpointURL\": \"http://rgw.local:8080\", \"Expiration\": \"2026-11-30T00:57:59.260716+00:00\", \"SecretAccessKey\": \"EJBVsecret\", \"SessionToken\": \"7MSXtoken\"}}"
        );
        assert!(ok.headers.contains(&("cache-control", "no-store".into())));
        let creds = w
            .sts_reply_for(
                Endpoint::Credentials,
                StsAnswer::Answered {
                    status: 200,
                    body: OK_XML.as_bytes(),
                    body_size: OK_XML.len(),
                },
            )
            .unwrap();
        assert_eq!((creds.status, creds.reason), (200, "minted"));
        assert_eq!(
            String::from_utf8(creds.body).unwrap(),
            "{\"AccessKeyId\": \"nEffVHB6D9aV8oNWipJ\", \"SecretAccessKey\": \"EJBVsecret\", \"Token\": \"7MSXtoken\", \"Expiration\": \"2026-11-30T00:57:59Z\"}"
        );
        assert_eq!(creds.headers, ok.headers);
        let denied = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message></Message><RequestId>x</RequestId><HostId>y</HostId></Error>";
        let answered = |status: u16, body: &str| {
            w.sts_reply(StsAnswer::Answered {
                status,
                body: body.as_bytes(),
                body_size: body.len(),
            })
        };
        assert_eq!(
            answered(403, denied),
            Err(Error::Rgw {
                status: 403,
                code: "AccessDenied".into()
            })
        );
        assert_eq!(
            answered(503, "no healthy upstream"),
            Err(Error::RgwUnavailable)
        );
        assert_eq!(
            answered(504, "upstream request timeout"),
            Err(Error::RgwTimeout)
        );
        assert_eq!(answered(500, "boom").unwrap_err().status(), 502);
        assert_eq!(answered(200, "<garbage").unwrap_err().status(), 502);
        assert_eq!(w.sts_reply(StsAnswer::Reset).unwrap_err().status(), 502);
        assert_eq!(
            w.sts_reply(StsAnswer::DispatchFailed).unwrap_err().status(),
            503
        );
        assert_eq!(
            w.sts_reply(StsAnswer::Answered {
                status: 200,
                body: b"",
                body_size: 10 << 20
            })
            .unwrap_err()
            .status(),
            502
        );
        // Every failure is the same error on both endpoints (same status and body).
        let bad_time = OK_XML.replace("2026-11-30T00:57:59.260716106Z", "soon");
        for (status, body) in [
            (403, denied),
            (503, "no healthy upstream"),
            (504, "x"),
            (500, "boom"),
            (200, "<garbage"),
            (200, bad_time.as_str()),
        ] {
            let answer = || StsAnswer::Answered {
                status,
                body: body.as_bytes(),
                body_size: body.len(),
            };
            let token = w.sts_reply(answer()).unwrap_err();
            assert_eq!(
                w.sts_reply_for(Endpoint::Credentials, answer()),
                Err(token),
                "{status} {body}"
            );
        }
        assert_eq!(
            w.sts_reply_for(Endpoint::Credentials, StsAnswer::Reset),
            w.sts_reply(StsAnswer::Reset)
        );
    }
}
