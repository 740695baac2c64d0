//! A sequence of things that happen to two VMs (two Envoy workers sharing a clock and shared
//! data; requests with arbitrary headers, ticks, callout
//! answers of any shape, clients that leave), then quiescence (every callout answered well,
//! time passes) and the checks of the property:
//! - the module never traps or hangs (runs out of fuel in one call);
//! - every request under the prefix whose client stayed got exactly one reply, a local one;
//!   every request outside the prefix got exactly one, `Continue`;
//! - no stream got a reply after its first one or after its client left;
//! - Envoy did not have to drop anything (a local reply on the root context), and every
//!   stream's context was deleted, every callout answered.
//!
//! Also one oracle that needs no model: `GET healthz` answers 200 whatever its headers.
use std::cell::RefCell;
use std::rc::Rc;

use crate::fixtures::{self, admin_token};
use crate::host::{Pairs, SharedData};
use crate::vm::{Answer, Reply, Vm};

#[derive(Debug, Clone)]
pub enum Target {
    Healthz,
    /// `PUT token` with a valid admin token.
    Token,
    /// `PUT token` with this `Authorization` value.
    TokenAuthorization(Vec<u8>),
    /// `PUT token` with a valid admin token and this `Cray-Tenant-Name`.
    TokenTenant(Vec<u8>),
    /// `GET credentials` with a valid admin token.
    Credentials,
    /// Any method and path under the prefix (`rest` is ASCII, appended to the prefix).
    Under {
        method: String,
        rest: String,
    },
    /// A path outside the prefix.
    Outside {
        method: String,
        path: String,
    },
}

#[derive(Debug, Clone)]
pub struct Request {
    pub target: Target,
    /// Extra headers, arbitrary bytes (no NUL, CR or LF in values: Envoy's codecs refuse them).
    pub headers: Pairs,
    pub end_of_stream: bool,
}

#[derive(Debug, Clone)]
pub enum AnswerSpec {
    /// The right answer for the cluster (the JWKS, or RGW's AssumeRole).
    Good,
    /// Any status, headers and body.
    Raw {
        status: u16,
        headers: Pairs,
        body: Vec<u8>,
    },
    Reset,
    /// Envoy's timeout: a local 504.
    Timeout,
}

#[derive(Debug, Clone)]
pub enum Op {
    Request(Request),
    /// Time passes, then the timer fires.
    Tick {
        advance_ms: u32,
    },
    /// Answers the pending callout at `pick` (modulo their number).
    Answer {
        pick: usize,
        answer: AnswerSpec,
    },
    /// The client of the open stream at `pick` (modulo their number) resets it.
    Leave {
        pick: usize,
    },
    /// The next callout fails inline (InternalFailure).
    RefuseNextDispatch,
    /// The following events go to the other VM (worker).
    Switch,
}

/// Counts over a run, for the report of a test.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub requests: usize,
    pub local_replies: usize,
    pub continues: usize,
    pub left: usize,
    pub statuses: std::collections::BTreeMap<u32, usize>,
    pub callouts_answered: usize,
    /// What the module logged, digits removed (the kinds of events it saw), hashed.
    pub log_kinds: std::collections::BTreeSet<u64>,
}

fn request_parts(r: &Request) -> (String, String, Pairs) {
    let prefix = fixtures::prefix();
    let bearer = || format!("Bearer {}", admin_token()).into_bytes();
    let mut headers: Pairs = Vec::new();
    let (method, path) = match &r.target {
        Target::Healthz => ("GET".to_string(), format!("{prefix}healthz")),
        Target::Token => {
            headers.push((b"authorization".to_vec(), bearer()));
            ("PUT".into(), format!("{prefix}token"))
        }
        Target::TokenAuthorization(v) => {
            headers.push((b"authorization".to_vec(), v.clone()));
            ("PUT".into(), format!("{prefix}token"))
        }
        Target::TokenTenant(v) => {
            headers.push((b"authorization".to_vec(), bearer()));
            headers.push((b"cray-tenant-name".to_vec(), v.clone()));
            ("PUT".into(), format!("{prefix}token"))
        }
        Target::Credentials => {
            headers.push((b"authorization".to_vec(), bearer()));
            ("GET".into(), format!("{prefix}credentials"))
        }
        Target::Under { method, rest } => (method.clone(), format!("{prefix}{rest}")),
        Target::Outside { method, path } => (method.clone(), path.clone()),
    };
    headers.extend(r.headers.iter().cloned());
    (method, path, headers)
}

fn answer_of(vm: &Vm, token: u32, spec: &AnswerSpec) -> Answer {
    match spec {
        AnswerSpec::Good => {
            let jwks = vm
                .host()
                .pending
                .get(&token)
                .is_some_and(|c| c.cluster == fixtures::jwks_cluster());
            if jwks {
                fixtures::jwks_answer()
            } else {
                fixtures::sts_answer()
            }
        }
        AnswerSpec::Raw {
            status,
            headers,
            body,
        } => {
            let mut h: Pairs = vec![(b":status".to_vec(), status.to_string().into_bytes())];
            h.extend(headers.iter().cloned());
            Answer::Response {
                headers: h,
                body: body.clone(),
                trailers: Vec::new(),
            }
        }
        AnswerSpec::Reset => Answer::Reset,
        AnswerSpec::Timeout => Answer::timeout(),
    }
}

/// Runs `ops` on two fresh VMs (two Envoy workers: one clock, one shared data), then
/// quiescence, then the checks. `Err` describes the first violation (a trap, a stream without
/// exactly one reply, ...).
pub fn run(ops: &[Op]) -> Result<Outcome, String> {
    let shared = Rc::new(RefCell::new(SharedData::default()));
    let mut vms = [
        fixtures::start_vm_with(shared.clone()),
        fixtures::start_vm_with(shared),
    ];
    let mut active = 0;
    let mut out = Outcome::default();
    let mut healthz = Vec::new();
    for op in ops {
        let vm = &mut vms[active];
        let r = match op {
            Op::Request(req) => {
                let (method, path, headers) = request_parts(req);
                out.requests += 1;
                vm.request(&method, &path, &headers, req.end_of_stream)
                    .map(|ctx| {
                        if matches!(req.target, Target::Healthz) {
                            healthz.push((active, ctx));
                        }
                    })
            }
            Op::Tick { advance_ms } => {
                for vm in vms.iter_mut() {
                    vm.advance(u64::from(*advance_ms));
                }
                vms[active].tick()
            }
            Op::Answer { pick, answer } => {
                let pending = vm.pending();
                if pending.is_empty() {
                    Ok(())
                } else {
                    let token = pending[pick % pending.len()];
                    let a = answer_of(vm, token, answer);
                    out.callouts_answered += 1;
                    vm.answer(token, a)
                }
            }
            Op::Leave { pick } => {
                let open = vm.open_streams();
                if open.is_empty() {
                    Ok(())
                } else {
                    out.left += 1;
                    vm.leave(open[pick % open.len()])
                }
            }
            Op::RefuseNextDispatch => {
                vm.host_mut().refuse_next_dispatch = true;
                Ok(())
            }
            Op::Switch => {
                active = 1 - active;
                Ok(())
            }
        };
        r.map_err(|t| format!("worker {active}: {t}"))?;
    }
    quiesce(&mut vms, &mut out)?;
    for (i, vm) in vms.iter().enumerate() {
        check(vm, &mut out).map_err(|e| format!("worker {i}: {e}"))?;
    }
    for (i, ctx) in healthz {
        let vm = &vms[i];
        match vm.local_reply(ctx) {
            Some(r) if r.status == 200 => {}
            None if vm.streams[&ctx].client_left => {}
            other => {
                return Err(format!(
                    "worker {i}: GET healthz (stream {ctx}) answered {other:?}, not 200"
                ))
            }
        }
    }
    Ok(out)
}

/// Every callout gets its good answer and time passes (ticks on every VM) until nothing is
/// left to do.
pub fn quiesce(vms: &mut [Vm], out: &mut Outcome) -> Result<(), String> {
    for vm in vms.iter_mut() {
        vm.host_mut().refuse_next_dispatch = false;
    }
    // 600 rounds of at least 100 ms: a minute of host time, past every wait of the filter.
    for _ in 0..600 {
        let busy = vms
            .iter()
            .any(|vm| !vm.pending().is_empty() || vm.streams.values().any(|s| !s.deleted));
        if !busy {
            return Ok(());
        }
        for vm in vms.iter_mut() {
            for token in vm.pending() {
                let a = answer_of(vm, token, &AnswerSpec::Good);
                out.callouts_answered += 1;
                vm.answer(token, a).map_err(|t| t.to_string())?;
            }
        }
        let step = vms
            .iter()
            .map(|vm| vm.host().tick_period_ms)
            .max()
            .unwrap_or(0)
            .max(100);
        for vm in vms.iter_mut() {
            vm.advance(step);
        }
        for vm in vms.iter_mut() {
            vm.tick().map_err(|t| t.to_string())?;
        }
    }
    Ok(())
}

/// The checks after quiescence.
pub fn check(vm: &Vm, out: &mut Outcome) -> Result<(), String> {
    let prefix = fixtures::prefix();
    if let Some(v) = vm.host().violations.first() {
        return Err(format!("host-side violation: {v}"));
    }
    for st in vm.streams.values() {
        let path = st
            .headers
            .iter()
            .find(|(n, _)| n.as_slice() == b":path")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let under = path.starts_with(&prefix);
        if !st.late_replies.is_empty() {
            return Err(format!(
                "stream {} ({path}) got a reply after its first one or after its client left: \
                 {:?} then {:?}",
                st.id, st.replies, st.late_replies
            ));
        }
        if !st.deleted {
            return Err(format!(
                "stream {} ({path}) never ended: no reply after a minute of ticks with every \
                 callout answered",
                st.id
            ));
        }
        if st.client_left {
            continue;
        }
        match (under, st.replies.as_slice()) {
            (true, [Reply::Local(r)]) => {
                out.local_replies += 1;
                *out.statuses.entry(r.status).or_insert(0) += 1;
            }
            (false, [Reply::Continue]) => out.continues += 1,
            (_, replies) => {
                return Err(format!(
                    "stream {} ({path}, under the prefix: {under}) got {replies:?}, not exactly \
                     one {}",
                    st.id,
                    if under { "local reply" } else { "Continue" }
                ))
            }
        }
    }
    if !vm.pending().is_empty() {
        return Err(format!("callouts never answered: {:?}", vm.pending()));
    }
    for (level, line) in &vm.host().log {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(level, &mut h);
        for c in line.chars().filter(|c| !c.is_ascii_digit()) {
            std::hash::Hash::hash(&c, &mut h);
        }
        out.log_kinds.insert(std::hash::Hasher::finish(&h));
    }
    Ok(())
}

// ------------------------------------------------------------------ fuzz input decoding

/// Reads a scenario from arbitrary bytes (the fuzz target); never fails.
pub fn from_bytes(data: &[u8]) -> Vec<Op> {
    let mut r = Reader { data, pos: 0 };
    let mut ops = Vec::new();
    while !r.done() && ops.len() < 48 {
        let op = match r.byte() % 8 {
            0..=2 => Op::Request(r.request()),
            3 => Op::Tick {
                advance_ms: u32::from(r.byte()) * 40,
            },
            4 | 5 => Op::Answer {
                pick: r.byte() as usize,
                answer: r.answer(),
            },
            6 => Op::Leave {
                pick: r.byte() as usize,
            },
            _ => Op::RefuseNextDispatch,
        };
        ops.push(op);
    }
    ops
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

const METHODS: [&str; 6] = ["GET", "PUT", "HEAD", "POST", "DELETE", "OPTIONS"];
const RESTS: [&str; 6] = [
    "healthz",
    "token",
    "credentials",
    "",
    "token/",
    "x?tenant=a",
];
const OUTSIDE: [&str; 4] = [
    "/keycloak/realms/shasta/protocol/openid-connect/certs",
    "/plain/healthz",
    "/apis/stsx",
    "/",
];

impl Reader<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    /// A length-prefixed byte string (length byte modulo `max + 1`).
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.byte() as usize) % (max + 1);
        let end = (self.pos + n).min(self.data.len());
        let v = self.data.get(self.pos..end).unwrap_or_default().to_vec();
        self.pos = end;
        v
    }
    /// Bytes Envoy lets through in a header value.
    fn value(&mut self, max: usize) -> Vec<u8> {
        self.bytes(max)
            .into_iter()
            .map(|b| {
                if matches!(b, 0 | b'\r' | b'\n') {
                    b'x'
                } else {
                    b
                }
            })
            .collect()
    }
    /// A lower-case RFC 9110 token (what Envoy's codecs let through as a header name).
    fn name(&mut self) -> Vec<u8> {
        const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz";
        let token = |b: u8| {
            let l = b.to_ascii_lowercase();
            if TCHAR.contains(&l) {
                l
            } else {
                TCHAR[b as usize % TCHAR.len()]
            }
        };
        let mut n: Vec<u8> = self.bytes(24).into_iter().map(token).collect();
        if n.is_empty() {
            n.push(b'x');
        }
        n
    }
    fn ascii(&mut self, max: usize) -> String {
        self.bytes(max)
            .into_iter()
            .map(|b| (b'!' + b % 94) as char)
            .filter(|c| *c != '#')
            .collect()
    }
    fn headers(&mut self) -> Pairs {
        let n = self.byte() % 12;
        (0..n).map(|_| (self.name(), self.value(64))).collect()
    }
    fn request(&mut self) -> Request {
        let target = match self.byte() % 8 {
            0 => Target::Healthz,
            1 | 2 => Target::Token,
            3 => Target::TokenAuthorization(self.value(80)),
            4 => Target::TokenTenant(self.value(32)),
            5 => Target::Credentials,
            6 => {
                let method = METHODS[self.byte() as usize % METHODS.len()].to_string();
                let rest = if self.byte().is_multiple_of(2) {
                    RESTS[self.byte() as usize % RESTS.len()].to_string()
                } else {
                    self.ascii(16)
                };
                Target::Under { method, rest }
            }
            _ => {
                let method = METHODS[self.byte() as usize % METHODS.len()].to_string();
                let path = if self.byte().is_multiple_of(2) {
                    OUTSIDE[self.byte() as usize % OUTSIDE.len()].to_string()
                } else {
                    format!("/{}", self.ascii(16))
                };
                Target::Outside { method, path }
            }
        };
        let headers = self.headers();
        Request {
            target,
            headers,
            end_of_stream: !self.byte().is_multiple_of(4),
        }
    }
    fn answer(&mut self) -> AnswerSpec {
        match self.byte() % 6 {
            0..=2 => AnswerSpec::Good,
            3 => AnswerSpec::Reset,
            4 => AnswerSpec::Timeout,
            _ => {
                let status = 100 + u16::from(self.byte()) * 2;
                let headers = self.headers();
                let body = self.bytes(200);
                AnswerSpec::Raw {
                    status,
                    headers,
                    body,
                }
            }
        }
    }
}

/// The fuzz target's body: decode, run, and panic on a violation.
pub fn fuzz_one(data: &[u8]) {
    let ops = from_bytes(data);
    match run(&ops) {
        Ok(out) => feedback(&out),
        Err(e) => panic!("{e}\nops: {ops:#?}"),
    }
}

/// libFuzzer sees coverage of the host, not of the code Cranelift generated for the module: this
/// turns what the module did (reply statuses, kinds of log lines) into calls of distinct
/// functions, so an input that makes the module do something new counts as new coverage.
fn feedback(out: &Outcome) {
    macro_rules! probes {
        ($($n:literal)*) => {{
            [$({
                #[inline(never)]
                fn p() { std::hint::black_box($n); }
                p as fn()
            }),*]
        }};
    }
    static PROBES: std::sync::OnceLock<Vec<fn()>> = std::sync::OnceLock::new();
    let probes = PROBES.get_or_init(|| {
        probes!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
                32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
                60 61 62 63)
        .to_vec()
    });
    let n = probes.len() as u64;
    for (status, count) in &out.statuses {
        let bucket = u64::from(*status) * 4 + (*count).min(3) as u64;
        probes[(bucket % n) as usize]();
    }
    for k in &out.log_kinds {
        probes[(k % n) as usize]();
    }
}
