//! RSA token verification (RS256, RS384, RS512, PS256, PS384, PS512) with a fast public-key
//! operation.
//!
//! jwt-simple's pure-Rust backend checks an RSA signature with RustCrypto `rsa` 0.9 on 64-bit
//! `num-bigint-dig` digits, which wasm32 emulates: about 2 ms per check in V8 for 2048 bits, and
//! about 75 KB of the module. Here the check is `s^65537 mod n` in 32-bit Montgomery arithmetic
//! (`rsa_math`), about 0.1 ms, followed by the padding check of RFC 8017: PKCS#1 v1.5 (§8.2.2,
//! the whole expected block compared byte for byte) or PSS (§9.1.2, MGF1 with the same hash, salt
//! as long as the hash, as jwt-simple signs and verifies).
//!
//! Everything else is jwt-simple 0.15's own `Token::verify` and `JWTClaims::validate`, step for step
//! and error for error, so the accepted tokens and the reported errors stay the same: the key
//! policy (`check_rsa_key_policy`: 2048 to 4096 bits, odd modulus, e = 65537), the token and
//! header limits, `crit`, `typ`, `alg`, `salt`, the signature, then the claims. Two deliberate
//! differences, both refusals RFC 8017 requires and `rsa` 0.9 skips for PSS: a signature not below
//! the modulus (§5.2.2), and a non-zero byte before the encoded message when the modulus is one bit
//! longer than a whole number of bytes (§9.1.2 step 1, I2OSP). The tests compare it with jwt-simple
//! (the oracle) and run the Wycheproof RSA PKCS#1 v1.5 and PSS vectors; the fuzz target `rs256`
//! (tests/fuzz) compares both on arbitrary tokens, keys and encoded blocks.
use jwt_simple::common::VerificationOptions;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::crypto::jws::{verify_token_with, Claims};
use crate::crypto::rsa_math::limb32::Modulus;

/// jwt-simple's RSA key policy.
const MIN_MODULUS_BITS: usize = 2048;
const MAX_MODULUS_BITS: usize = 4096;

/// The hash of an algorithm, also MGF1's for PSS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// DER of `DigestInfo { AlgorithmIdentifier { id-shaN, NULL }, OCTET STRING }` up to the hash
    /// (RFC 8017 §9.2, note 1).
    fn digest_info(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    /// The hash of the concatenated parts.
    fn of(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for part in parts {
                d.update(part);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha384 => run::<Sha384>(parts),
            Hash::Sha512 => run::<Sha512>(parts),
        }
    }
}

/// The signature scheme of an algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Padding {
    Pkcs1v15,
    Pss,
}

/// An RSA public key prepared for one JWT algorithm.
pub struct RsaKey {
    alg: &'static str,
    padding: Padding,
    hash: Hash,
    modulus: Modulus,
    /// Length of the modulus in bits.
    bits: usize,
}

impl RsaKey {
    /// Big-endian `n` and `e` (leading zeros allowed); `None` for an algorithm other than the six
    /// RSA ones or a key jwt-simple refuses.
    pub fn from_components(alg: &str, n: &[u8], e: &[u8]) -> Option<RsaKey> {
        let (alg, padding, hash) = match alg {
            "RS256" => ("RS256", Padding::Pkcs1v15, Hash::Sha256),
            "RS384" => ("RS384", Padding::Pkcs1v15, Hash::Sha384),
            "RS512" => ("RS512", Padding::Pkcs1v15, Hash::Sha512),
            "PS256" => ("PS256", Padding::Pss, Hash::Sha256),
            "PS384" => ("PS384", Padding::Pss, Hash::Sha384),
            "PS512" => ("PS512", Padding::Pss, Hash::Sha512),
            _ => return None,
        };
        let n = trim_leading_zeros(n);
        let top = n.first()?;
        let bits = (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize);
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits) {
            return None;
        }
        if n.last()? & 1 != 1 || trim_leading_zeros(e) != [1, 0, 1] {
            return None;
        }
        Some(RsaKey {
            alg,
            padding,
            hash,
            modulus: Modulus::new(n)?,
            bits,
        })
    }

    /// The JWT algorithm this key verifies.
    pub fn alg(&self) -> &'static str {
        self.alg
    }

    /// RSAVP1 (RFC 8017 §5.2.2): `s^e mod n` as many bytes as the modulus, `None` unless the
    /// signature is exactly as long as the modulus and below it.
    pub fn rsavp1(&self, signature: &[u8]) -> Option<Vec<u8>> {
        self.modulus.pow65537(signature)
    }

    /// RSASSA-PKCS1-v1_5-VERIFY (RFC 8017 §8.2.2) or RSASSA-PSS-VERIFY (§8.1.2).
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        // Length, s < n, s^e mod n.
        let Some(em) = self.rsavp1(signature) else {
            return false;
        };
        let m_hash = self.hash.of(&[message]);
        match self.padding {
            Padding::Pkcs1v15 => self.pkcs1_v1_5_matches(&em, &m_hash),
            Padding::Pss => self.pss_matches(&em, &m_hash),
        }
    }

    /// EMSA-PKCS1-v1_5 (§9.2): build the expected block and compare whole.
    fn pkcs1_v1_5_matches(&self, em: &[u8], m_hash: &[u8]) -> bool {
        let k = self.modulus.len();
        let digest_info = self.hash.digest_info();
        let t_len = digest_info.len() + m_hash.len();
        let Some(ps_len) = k.checked_sub(t_len + 3).filter(|&n| n >= 8) else {
            return false;
        };
        let mut expected = Vec::with_capacity(k);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + ps_len, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(digest_info);
        expected.extend_from_slice(m_hash);
        em == expected
    }

    /// EMSA-PSS-VERIFY (§9.1.2) with MGF1 of the same hash and a salt as long as the hash.
    fn pss_matches(&self, em: &[u8], m_hash: &[u8]) -> bool {
        let h_len = m_hash.len();
        let s_len = h_len;
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        // I2OSP(m, emLen): the modulus' byte beyond emLen, if any, must be zero.
        let Some((lead, em)) = em.len().checked_sub(em_len).map(|i| em.split_at(i)) else {
            return false;
        };
        if lead.iter().any(|&b| b != 0) {
            return false;
        }
        // Steps 3 to 5.
        if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
            return false;
        }
        let (masked_db, rest) = em.split_at(em_len - h_len - 1);
        let Some(h) = rest.get(..h_len) else {
            return false;
        };
        // Step 6: the bits above emBits are zero.
        let top_mask = 0xffu8 >> (8 * em_len - em_bits);
        let Some(&first) = masked_db.first() else {
            return false;
        };
        if first & !top_mask != 0 {
            return false;
        }
        // Steps 7 to 9: DB = maskedDB xor MGF1(H), top bits cleared.
        let mut db = masked_db.to_vec();
        for (chunk, counter) in db.chunks_mut(h_len).zip(0u32..) {
            let mask = self.hash.of(&[h, &counter.to_be_bytes()]);
            for (b, m) in chunk.iter_mut().zip(mask) {
                *b ^= m;
            }
        }
        if let Some(b) = db.first_mut() {
            *b &= top_mask;
        }
        // Step 10: zeros, then 0x01, then the salt.
        let zeros = em_len - h_len - s_len - 2;
        let (Some(padding), Some(&one), Some(salt)) =
            (db.get(..zeros), db.get(zeros), db.get(db.len() - s_len..))
        else {
            return false;
        };
        if padding.iter().any(|&b| b != 0) || one != 0x01 {
            return false;
        }
        // Steps 12 to 14: H' = Hash(0^8 || mHash || salt) equals H.
        self.hash.of(&[&[0u8; 8], m_hash, salt]) == h
    }

    /// jwt-simple's `RSAPublicKeyLike::verify_token` (see [`verify_token_with`]).
    pub fn verify_token(
        &self,
        token: &str,
        options: &VerificationOptions,
    ) -> Result<Claims, jwt_simple::Error> {
        verify_token_with(
            self.alg,
            &|m, s| self.verify_signature(m, s),
            token,
            options,
        )
    }
}

fn trim_leading_zeros(x: &[u8]) -> &[u8] {
    let first = x.iter().position(|&b| b != 0).unwrap_or(x.len());
    x.get(first..).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    //! The oracle is jwt-simple's pure-Rust verifier (superboring over RustCrypto `rsa` 0.9),
    //! which the gateway used before, and `num-bigint-dig` for the arithmetic.
    use super::*;
    use crate::test_support::{claims, keypairs, oracle_parts, sign, sign_raw, ISS, NOW};
    use jwt_simple::algorithms::{RS256PublicKey, RSAPublicKeyLike};
    use jwt_simple::prelude::Duration;
    use serde_json::json;
    use superboring::reexports::rsa::BigUint;
    use wycheproof::rsa_pkcs1_verify::{TestFlag, TestName, TestSet};
    use wycheproof::TestResult;

    const ALGS: [&str; 6] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

    fn oracle_signature(
        alg: &str,
        n: &[u8],
        e: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Option<bool> {
        use superboring::{bn::BigNum, pkey::PKey, rsa, sign::Verifier};
        let key = rsa::Rsa::from_public_components(
            BigNum::from_slice(n).ok()?,
            BigNum::from_slice(e).ok()?,
        )
        .ok()?;
        let pkey = PKey::from_rsa(key).ok()?;
        let (padding, digest) = oracle_parts(alg);
        let mut v = Verifier::new(digest, &pkey).ok()?;
        v.set_rsa_padding(padding).ok()?;
        v.update(message).ok()?;
        Some(v.verify(signature).unwrap_or(false))
    }

    /// s >= n: RFC 8017 refuses it, `rsa` 0.9's PSS check reduces it modulo n.
    fn not_below(n: &[u8], s: &[u8]) -> bool {
        s.len() == trim_leading_zeros(n).len()
            && BigUint::from_bytes_be(s) >= BigUint::from_bytes_be(n)
    }

    /// Every RSASSA-PKCS1-v1_5 vector with SHA-256, -384 or -512 whose key jwt-simple accepts:
    /// the expected result under the matching algorithm, and the oracle's under all six; a
    /// signature never passes an algorithm of another hash or padding. Keys outside the policy
    /// (e.g. 8192 bits) are refused by both.
    /// jwt-simple's key policy, written out: a modulus of 2048 to 4096 bits and e = 65537.
    fn in_policy(key_size: usize, e: &[u8]) -> bool {
        (2048..=4096).contains(&key_size) && trim_leading_zeros(e) == [1, 0, 1]
    }

    #[test]
    fn wycheproof_pkcs1_v1_5() {
        let (mut valid, mut invalid, mut other) = (0, 0, 0);
        // The same counts from the vectors alone (keys in the policy, the expected result), so
        // a vector skipped or a key refused by mistake shows as a difference.
        let (mut data_valid, mut data_invalid, mut data_other) = (0, 0, 0);
        let sets = [
            (TestName::Rsa2048Sha256, "RS256"),
            (TestName::Rsa3072Sha256, "RS256"),
            (TestName::Rsa4096Sha256, "RS256"),
            (TestName::Rsa8192Sha256, "RS256"),
            (TestName::Rsa2048Sha384, "RS384"),
            (TestName::Rsa3072Sha384, "RS384"),
            (TestName::Rsa4096Sha384, "RS384"),
            (TestName::Rsa2048Sha512, "RS512"),
            (TestName::Rsa3072Sha512, "RS512"),
            (TestName::Rsa4096Sha512, "RS512"),
            (TestName::Rsa2048Sha224, ""),
            (TestName::Rsa2048Sha512_256, ""),
        ];
        for (name, matching) in sets {
            let set = TestSet::load(name).unwrap();
            for group in &set.test_groups {
                let (n, e) = (&group.key.n[..], &group.key.e[..]);
                if in_policy(group.key_size, e) {
                    for t in &group.tests {
                        data_valid +=
                            usize::from(!matching.is_empty() && t.result == TestResult::Valid);
                        data_invalid +=
                            usize::from(!matching.is_empty() && t.result == TestResult::Invalid);
                        data_other += ALGS.iter().filter(|a| **a != matching).count();
                    }
                }
                for alg in ALGS {
                    let key = RsaKey::from_components(alg, n, e);
                    assert_eq!(
                        key.is_some(),
                        RS256PublicKey::from_components(n, e).is_ok(),
                        "{name:?}: key policy differs"
                    );
                    let Some(key) = key else {
                        assert!(
                            !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&group.key_size)
                                || trim_leading_zeros(e) != [1, 0, 1],
                            "{name:?}: a key within the policy refused"
                        );
                        continue;
                    };
                    for t in &group.tests {
                        let ours = key.verify_signature(&t.msg, &t.sig);
                        let oracle = oracle_signature(alg, n, e, &t.msg, &t.sig).unwrap();
                        if alg.starts_with("RS") || !not_below(n, &t.sig) {
                            assert_eq!(ours, oracle, "{name:?} {alg} tc {}", t.tc_id);
                        }
                        if alg != matching {
                            // Their WrongHash vectors may be valid under another hash, their
                            // WrongPrimitive ones (PSS signatures) under PS256.
                            if !t.flags.contains(&TestFlag::WrongHash)
                                && !t.flags.contains(&TestFlag::WrongPrimitive)
                            {
                                assert!(!ours, "{name:?} tc {}: {alg} accepted", t.tc_id);
                            }
                            other += 1;
                            continue;
                        }
                        match t.result {
                            TestResult::Valid => {
                                assert!(ours, "{name:?} tc {} ({})", t.tc_id, t.comment);
                                valid += 1;
                            }
                            TestResult::Invalid => {
                                assert!(!ours, "{name:?} tc {} ({})", t.tc_id, t.comment);
                                invalid += 1;
                            }
                            TestResult::Acceptable => {}
                        }
                    }
                }
            }
        }
        eprintln!("PKCS#1 v1.5: {valid} valid, {invalid} invalid, {other} under another algorithm");
        assert_eq!(
            (valid, invalid, other),
            (data_valid, data_invalid, data_other),
            "counted from the verdicts / from the vectors"
        );
        // Wycheproof's sets as the `wycheproof` crate ships them (0.7): a new release that
        // changes them must be looked at, not absorbed.
        assert_eq!((valid, invalid, other), (63, 2253, 14715));
    }

    /// The Wycheproof RSASSA-PSS vectors: those with MGF1 of the same hash and a salt as long as
    /// the hash get their expected result under PS256/384/512; every other set (salt 0, salt 32
    /// with SHA-512, MGF1 with another hash, the misc set) passes only where its signature is also
    /// valid for that profile, which the oracle decides. Where the oracle accepts a signature not
    /// below the modulus, ours refuses it (RFC 8017 §5.2.2).
    #[test]
    fn wycheproof_pss() {
        use wycheproof::rsa_pss_verify::{TestName as Pss, TestSet as PssSet};
        let (mut valid, mut invalid, mut other, mut above) = (0, 0, 0, 0);
        let (mut data_valid, mut data_invalid, mut refused_keys) = (0, 0, 0);
        let sets = [
            (Pss::RsaPss2048Sha256Mgf1SaltLen32, "PS256"),
            (Pss::RsaPss3072Sha256Mgf1SaltLen32, "PS256"),
            (Pss::RsaPss4096Sha256Mgf1SaltLen32, "PS256"),
            (Pss::RsaPss2048Sha384Mgf1SaltLen48, "PS384"),
            (Pss::RsaPss4096Sha384Mgf1SaltLen48, "PS384"),
            (Pss::RsaPss4096Sha512Mgf1SaltLen64, "PS512"),
            (Pss::RsaPss2048Sha256Mgf1SaltLen0, ""),
            (Pss::RsaPss4096Sha512Mgf1SaltLen32, ""),
            (Pss::RsaPss2048Sha256Mgf1Sha1_20, ""),
            (Pss::RsaPssmisc, ""),
        ];
        for (name, matching) in sets {
            let set = PssSet::load(name).unwrap();
            for group in &set.test_groups {
                let (n, e) = (&group.key.n[..], &group.key.e[..]);
                let accepted = in_policy(group.key_size, e);
                if accepted && !matching.is_empty() {
                    for t in &group.tests {
                        data_valid += usize::from(t.result == TestResult::Valid);
                        data_invalid += usize::from(t.result == TestResult::Invalid);
                    }
                }
                for alg in ALGS {
                    let key = RsaKey::from_components(alg, n, e);
                    assert_eq!(
                        key.is_some(),
                        RS256PublicKey::from_components(n, e).is_ok(),
                        "{name:?} {alg}: key policy differs from jwt-simple's"
                    );
                    assert_eq!(key.is_some(), accepted, "{name:?} {alg}: key decision");
                    let Some(key) = key else {
                        refused_keys += 1;
                        continue;
                    };
                    for t in &group.tests {
                        let ours = key.verify_signature(&t.msg, &t.sig);
                        let oracle = oracle_signature(alg, n, e, &t.msg, &t.sig).unwrap();
                        if oracle && !ours && not_below(n, &t.sig) {
                            above += 1;
                        } else {
                            assert_eq!(ours, oracle, "{name:?} {alg} tc {}", t.tc_id);
                        }
                        if alg != matching {
                            other += usize::from(!ours);
                            continue;
                        }
                        match t.result {
                            TestResult::Valid => {
                                assert!(ours, "{name:?} tc {} ({})", t.tc_id, t.comment);
                                valid += 1;
                            }
                            TestResult::Invalid => {
                                assert!(!ours, "{name:?} tc {} ({})", t.tc_id, t.comment);
                                invalid += 1;
                            }
                            TestResult::Acceptable => {}
                        }
                    }
                }
            }
        }
        eprintln!("PSS: {valid} valid, {invalid} invalid, {other} refused under another profile, {above} s >= n, {refused_keys} (set, algorithm) keys refused");
        assert_eq!((valid, invalid), (data_valid, data_invalid));
        // As the `wycheproof` crate ships the sets (see the PKCS#1 test).
        assert_eq!(
            (valid, invalid, other, above, refused_keys),
            (511, 274, 7136, 0, 0)
        );
    }

    /// xorshift64*: reproducible inputs without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// RSAVP1 against `num-bigint-dig` for odd moduli of every length from 2041 to 4096 bits in
    /// steps of 7 (not only whole limbs), and for edge values of s.
    #[test]
    fn rsavp1_matches_num_bigint() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let e = BigUint::from(65537u32);
        for bits in (2041usize..=4096).step_by(7) {
            let len = bits.div_ceil(8);
            let mut n = rng.bytes(len);
            n[0] &= 0xff >> (len * 8 - bits);
            n[0] |= 1 << ((bits - 1) % 8);
            n[len - 1] |= 1;
            let big_n = BigUint::from_bytes_be(&n);
            let key = RsaKey::from_components("RS256", &n, &[1, 0, 1]);
            assert_eq!(key.is_some(), bits >= MIN_MODULUS_BITS, "{bits} bits");
            let Some(key) = key else { continue };
            let mut n_minus_1 = n.clone();
            n_minus_1[len - 1] ^= 1;
            let mut candidates = vec![rng.bytes(len), vec![0; len], n_minus_1, n.clone()];
            let mut one = vec![0; len];
            one[len - 1] = 1;
            candidates.push(one);
            candidates.push(rng.bytes(len - 1));
            candidates.push(rng.bytes(len + 1));
            for s in candidates {
                let v = BigUint::from_bytes_be(&s);
                let expected = (s.len() == len && v < big_n).then(|| {
                    let r = v.modpow(&e, &big_n).to_bytes_be();
                    let mut out = vec![0; len - r.len()];
                    out.extend_from_slice(&r);
                    out
                });
                assert_eq!(key.rsavp1(&s), expected, "{bits} bits, s = {s:02x?}");
            }
        }
    }

    /// The key policy is jwt-simple's for all six algorithms, also for padded, short, long, even and odd-exponent keys.
    #[test]
    fn key_policy_matches_jwt_simple() {
        let c = keypairs()[0].public_key().to_components();
        let mut rng = Rng(7);
        let mut cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (c.n.clone(), c.e.clone()),
            ([&[0, 0][..], &c.n].concat(), [&[0][..], &c.e].concat()),
            (c.n.clone(), vec![3]),
            (c.n.clone(), vec![1, 0, 3]),
            (c.n.clone(), vec![]),
            (c.n[1..].to_vec(), c.e.clone()),
            (vec![], c.e.clone()),
        ];
        let mut even = c.n.clone();
        even[255] &= 0xfe;
        cases.push((even, c.e.clone()));
        for len in [255, 256, 257, 384, 511, 512, 513] {
            let mut n = rng.bytes(len);
            n[len - 1] |= 1;
            n[0] |= 0x80;
            cases.push((n.clone(), c.e.clone()));
            n[0] = 1;
            cases.push((n, c.e.clone()));
        }
        for ((n, e), alg) in cases.iter().flat_map(|c| ALGS.map(|a| (c, a))) {
            assert_eq!(
                RsaKey::from_components(alg, n, e).is_some(),
                RS256PublicKey::from_components(n, e).is_ok(),
                "{alg}: n {} bytes, e {e:?}",
                n.len()
            );
        }
    }

    fn options(now: u64) -> VerificationOptions {
        VerificationOptions {
            allowed_issuers: Some([ISS.to_string()].into()),
            allowed_audiences: Some(["shasta".to_string()].into()),
            time_tolerance: Some(Duration::from_secs(60)),
            artificial_time: Some(Duration::from_secs(now)),
            max_token_length: Some(16384),
            ..VerificationOptions::default()
        }
    }

    /// Same claims or same error as jwt-simple; returns whether the token was accepted.
    fn same_verdict(token: &str, options: &VerificationOptions) -> bool {
        let c = keypairs()[0].public_key().to_components();
        let ours = RsaKey::from_components("RS256", &c.n, &c.e).unwrap();
        let old = keypairs()[0]
            .public_key()
            .verify_token::<serde_json::Map<String, serde_json::Value>>(
                token,
                Some(options.clone()),
            );
        let new = ours.verify_token(token, options);
        match (old, new) {
            (Ok(a), Ok(b)) => {
                assert_eq!(normalized(&a), normalized(&b), "{token}");
                true
            }
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string(), "{token}");
                false
            }
            (a, b) => panic!("{token}: old ok {}, new ok {}", a.is_ok(), b.is_ok()),
        }
    }

    /// The claims as JSON, with `aud` (a set) sorted.
    fn normalized(c: &Claims) -> serde_json::Value {
        let mut v = serde_json::to_value(c).unwrap();
        if let Some(serde_json::Value::Array(aud)) = v.get_mut("aud") {
            aud.sort_by_key(|a| a.to_string());
        }
        v
    }

    #[test]
    fn tokens_get_jwt_simple_verdicts() {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "sig-1"});
        let good = sign(header.clone(), claims(json!({})), 0);
        let mut accepted = 0;
        let mut tokens = vec![good.clone()];
        // Headers: typ, crit, salt, alg, kid, field types.
        for h in [
            json!({"alg": "RS256"}),
            json!({"alg": "RS256", "typ": "at+jwt"}),
            json!({"alg": "RS256", "typ": "Bearer"}),
            json!({"alg": "RS256", "crit": []}),
            json!({"alg": "RS256", "crit": ["exp"]}),
            json!({"alg": "RS256", "salt": "AAAA"}),
            json!({"alg": "RS256", "salt": "!!!"}),
            json!({"alg": "RS256", "salt": 5}),
            json!({"alg": "RS384"}),
            json!({"alg": "none"}),
            json!({"alg": "RS256", "kid": 7}),
            json!({"typ": "JWT"}),
            json!([1]),
        ] {
            tokens.push(sign(h, claims(json!({})), 0));
        }
        // Claims: times, issuer, audience, types.
        for c in [
            json!({"exp": NOW - 61}),
            json!({"exp": NOW - 59}),
            json!({"exp": null}),
            json!({"nbf": NOW + 61}),
            json!({"nbf": NOW + 59}),
            json!({"iat": NOW + 61}),
            json!({"iss": "other"}),
            json!({"iss": null}),
            json!({"aud": "shasta"}),
            json!({"aud": ["other"]}),
            json!({"aud": null}),
            json!({"exp": "soon"}),
            json!({"sub": 5}),
        ] {
            tokens.push(sign(header.clone(), claims(c), 0));
        }
        tokens.push(sign(header.clone(), json!("not an object"), 0));
        // Signed by another key; tampered parts; broken encodings and shapes.
        tokens.push(sign(header.clone(), claims(json!({})), 1));
        let (input, sig) = good.rsplit_once('.').unwrap();
        let (head, body) = input.split_once('.').unwrap();
        for (i, c) in good.char_indices().step_by(37) {
            let flipped = if c == 'A' { 'B' } else { 'A' };
            tokens.push(format!("{}{flipped}{}", &good[..i], &good[i + 1..]));
        }
        tokens.extend([
            format!("{input}.{sig}="),
            format!("{input}.{sig}A"),
            format!("{input}.{}", &sig[..sig.len() - 2]),
            format!("{input}."),
            format!("{input}.{sig}.x"),
            format!("{head}.{body}"),
            format!("{head}.{body}=.{sig}"),
            format!("{head}=.{body}.{sig}"),
            input.to_string(),
            String::new(),
            "..".to_string(),
            format!("{}.{body}.{sig}", "A".repeat(9000)),
        ]);
        for token in &tokens {
            for now in [NOW, NOW - 100, NOW + 3659, NOW + 3661] {
                accepted += usize::from(same_verdict(token, &options(now)));
            }
        }
        // Tokens accepted by both: the good one and several header/claim variants.
        assert!(accepted >= 10, "{accepted}");
        let mut tight = options(NOW);
        tight.max_token_length = Some(good.len() - 1);
        assert!(!same_verdict(&good, &tight));
        let mut strict = options(NOW);
        strict.required_subject = Some("u-1".into());
        strict.required_key_id = Some("sig-1".into());
        strict.required_signature_type = Some("jwt".into());
        strict.max_validity = Some(Duration::from_secs(5));
        assert!(!same_verdict(&good, &strict));
        strict.max_validity = None;
        assert!(same_verdict(&good, &strict));
        strict.required_nonce = Some("n".into());
        assert!(!same_verdict(&good, &strict));
    }

    /// Tokens signed under each of the six algorithms (and under the others, and tampered)
    /// get jwt-simple's verdict from the key of each algorithm: the same claims or the same error.
    #[test]
    fn every_algorithm_gets_jwt_simple_verdicts() {
        use crate::test_support::b64;
        use jwt_simple::algorithms::{
            PS256PublicKey, PS384PublicKey, PS512PublicKey, RS384PublicKey, RS512PublicKey,
        };
        type Oracle = Box<dyn Fn(&str) -> Result<Claims, jwt_simple::Error>>;
        let c = keypairs()[0].public_key().to_components();
        let (n, e) = (c.n.clone(), c.e.clone());
        let opts = options(NOW);
        let oracle = |alg: &str| -> Oracle {
            let o = opts.clone();
            macro_rules! of {
                ($t:ty) => {{
                    let k = <$t>::from_components(&n, &e).unwrap();
                    Box::new(move |t: &str| k.verify_token(t, Some(o.clone())))
                }};
            }
            match alg {
                "RS256" => of!(RS256PublicKey),
                "RS384" => of!(RS384PublicKey),
                "RS512" => of!(RS512PublicKey),
                "PS256" => of!(PS256PublicKey),
                "PS384" => of!(PS384PublicKey),
                _ => of!(PS512PublicKey),
            }
        };
        let mut tokens = Vec::new();
        for signed_with in ALGS {
            for header_alg in ALGS {
                for key in [0, 1] {
                    let header = json!({"alg": header_alg, "typ": "JWT", "kid": "sig-1"});
                    let input = format!(
                        "{}.{}",
                        b64(header.to_string().as_bytes()),
                        b64(claims(json!({})).to_string().as_bytes())
                    );
                    let sig = sign_raw(signed_with, key, input.as_bytes());
                    let token = format!("{input}.{}", b64(&sig));
                    let mut bad = sig.clone();
                    bad[17] ^= 4;
                    tokens.push(format!("{input}.{}", b64(&bad)));
                    tokens.push(format!("{input}x.{}", b64(&sig)));
                    tokens.push(token);
                }
            }
        }
        let mut accepted = 0;
        for alg in ALGS {
            let ours = RsaKey::from_components(alg, &n, &e).unwrap();
            let theirs = oracle(alg);
            for token in &tokens {
                match (theirs(token), ours.verify_token(token, &opts)) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(normalized(&a), normalized(&b), "{alg} {token}");
                        accepted += 1;
                    }
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{alg} {token}"),
                    (a, b) => panic!(
                        "{alg} {token}: jwt-simple ok {}, ours ok {}",
                        a.is_ok(),
                        b.is_ok()
                    ),
                }
            }
        }
        // Exactly one per algorithm: its own header, its own signature, the right key.
        assert_eq!(accepted, 6);
    }

    /// A modulus one bit over whole bytes (2049 bits): the encoded message is one byte shorter
    /// than the modulus, and the byte before it must be zero (RFC 8017 §9.1.2 step 1). EM is built
    /// here by EMSA-PSS-ENCODE (§9.1.1) with SHA-256.
    #[test]
    fn pss_with_a_modulus_of_2049_bits() {
        let mut rng = Rng(0x2049);
        let mut n = rng.bytes(257);
        n[0] = 1;
        n[256] |= 1;
        let key = RsaKey::from_components("PS256", &n, &[1, 0, 1]).unwrap();
        assert_eq!(key.bits, 2049);
        let m_hash = Sha256::digest(b"header.claims").to_vec();
        let salt = rng.bytes(32);
        let h = Sha256::digest([&[0u8; 8][..], &m_hash, &salt].concat()).to_vec();
        let em_len = 256; // ceil(2048 / 8)
        let mut db = vec![0u8; em_len - 32 - 32 - 2];
        db.push(1);
        db.extend_from_slice(&salt);
        let mut mask = Vec::new();
        for counter in 0u32.. {
            if mask.len() >= db.len() {
                break;
            }
            mask.extend_from_slice(&Sha256::digest([&h[..], &counter.to_be_bytes()].concat()));
        }
        let mut em: Vec<u8> = db.iter().zip(&mask).map(|(d, m)| d ^ m).collect();
        em.extend_from_slice(&h);
        em.push(0xbc);
        let mut full = vec![0];
        full.extend_from_slice(&em);
        assert!(key.pss_matches(&full, &m_hash));
        full[0] = 1;
        assert!(!key.pss_matches(&full, &m_hash));
        full[0] = 0;
        full[200] ^= 1;
        assert!(!key.pss_matches(&full, &m_hash));
    }
}
