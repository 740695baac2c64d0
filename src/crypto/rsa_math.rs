//! Variable-time RSA public-key operation `s^65537 mod n` (Montgomery multiplication, CIOS),
//! for signature verification only: every input is public, so nothing here needs to be
//! constant-time. Limbs are 32 bits: V8 runs a 32x32->64 bit product as one `i64.mul`, while 64-bit
//! limbs need a 128-bit product that wasm32 has to emulate (measured in V8, tests/rsa-bench).
//! The sixteen squarings use the same product: a dedicated squaring (each cross product once, then
//! a separate reduction, 1.5 k^2 limb products instead of 2 k^2) measured 10-14 % slower in V8,
//! its extra passes over memory costing more than the products saved; product scanning with the
//! reduction interleaved (FIPS, each product split into two carry-free accumulators) measured 130
//! against 92 us per 2048-bit check; two rows of CIOS per pass (half the loads and stores) measured
//! the same as one (tests/rsa-bench, 2026-12-01). What is left is the multiply-add chain itself.

/// One limb and the double-width type that holds a limb product plus two carries.
macro_rules! modulus_impl {
    ($name:ident, $limb:ty, $wide:ty) => {
        /// An odd modulus prepared for Montgomery multiplication (R = 2^(limb bits * limbs)).
        pub struct $name {
            /// Little-endian limbs, the top one non-zero.
            n: Vec<$limb>,
            /// -n^-1 mod 2^limb bits.
            n0inv: $limb,
            /// R^2 mod n.
            rr: Vec<$limb>,
            /// Length of the modulus in bytes, without leading zeros.
            len: usize,
        }

        impl $name {
            const BYTES: usize = std::mem::size_of::<$limb>();
            const BITS: u32 = <$limb>::BITS;

            /// `n` big-endian; leading zeros are ignored. `None` when `n` is even or below 3.
            pub fn new(n: &[u8]) -> Option<Self> {
                let first = n.iter().position(|&b| b != 0)?;
                let n = n.get(first..)?;
                let limbs = limbs_from_be(n, n.len().div_ceil(Self::BYTES))?;
                let low = *limbs.first()?;
                if low & 1 == 0 || (limbs.len() == 1 && low < 3) {
                    return None;
                }
                // Newton's iteration for the inverse mod 2^BITS: each step doubles the correct bits.
                let mut inv: $limb = 1;
                for _ in 0..7 {
                    inv = inv.wrapping_mul((2 as $limb).wrapping_sub(low.wrapping_mul(inv)));
                }
                let mut m = $name {
                    n: limbs,
                    n0inv: inv.wrapping_neg(),
                    rr: Vec::new(),
                    len: n.len(),
                };
                m.rr = m.r_squared();
                Some(m)
            }

            /// Length of the modulus in bytes.
            pub fn len(&self) -> usize {
                self.len
            }

            /// R^2 mod n, by doubling 2^(bits(n) - 1) modulo n up to 2^(2 * BITS * limbs).
            fn r_squared(&self) -> Vec<$limb> {
                let k = self.n.len();
                let top = self.n.last().copied().unwrap_or(1);
                let bits = (k as u32 - 1) * Self::BITS + (Self::BITS - top.leading_zeros());
                let mut x: Vec<$limb> = vec![0; k];
                let bit = bits - 1;
                if let Some(limb) = x.get_mut((bit / Self::BITS) as usize) {
                    *limb = 1 << (bit % Self::BITS);
                }
                for _ in bit..2 * Self::BITS * k as u32 {
                    let mut carry: $limb = 0;
                    for limb in x.iter_mut() {
                        let next = *limb >> (Self::BITS - 1);
                        *limb = (*limb << 1) | carry;
                        carry = next;
                    }
                    if carry != 0 || !less(&x, &self.n) {
                        sub_in_place(&mut x, &self.n);
                    }
                }
                x
            }

            /// a * b * R^-1 mod n, for a, b < n (the result is < n).
            fn mont_mul(&self, a: &[$limb], b: &[$limb], t: &mut Vec<$limb>) {
                let k = self.n.len();
                t.clear();
                t.resize(k + 1, 0);
                let (Some((&n0, n_rest)), Some((&b0, b_rest))) =
                    (self.n.split_first(), b.split_first())
                else {
                    return;
                };
                for &ai in a {
                    let Some((top, body)) = t.split_last_mut() else {
                        return;
                    };
                    let Some((t0, mid)) = body.split_first_mut() else {
                        return;
                    };
                    let x = *t0 as $wide + ai as $wide * b0 as $wide;
                    let mut c1 = x >> Self::BITS;
                    let m = (x as $limb).wrapping_mul(self.n0inv);
                    let y = (x as $limb) as $wide + m as $wide * n0 as $wide;
                    let mut c2 = y >> Self::BITS;
                    let mut prev = t0;
                    for ((slot, &bj), &nj) in mid.iter_mut().zip(b_rest).zip(n_rest) {
                        let x = *slot as $wide + ai as $wide * bj as $wide + c1;
                        c1 = x >> Self::BITS;
                        let y = (x as $limb) as $wide + m as $wide * nj as $wide + c2;
                        c2 = y >> Self::BITS;
                        *prev = y as $limb;
                        prev = slot;
                    }
                    let x = *top as $wide + c1 + c2;
                    *prev = x as $limb;
                    *top = (x >> Self::BITS) as $limb;
                }
                let overflow = t.pop().unwrap_or(0);
                if overflow != 0 || !less(t, &self.n) {
                    sub_in_place(t, &self.n);
                }
            }

            /// `s^65537 mod n` as big-endian bytes of the modulus length, `None` unless `s` (big-endian)
            /// is exactly as long as the modulus and below it.
            pub fn pow65537(&self, s: &[u8]) -> Option<Vec<u8>> {
                if s.len() != self.len {
                    return None;
                }
                let s = limbs_from_be(s, self.n.len())?;
                if !less(&s, &self.n) {
                    return None;
                }
                let mut t = Vec::with_capacity(self.n.len() + 1);
                // x = s * R; sixteen squarings give s^65536 * R; one more product with s (not in
                // Montgomery form) gives s^65537 * R * R^-1.
                self.mont_mul(&s, &self.rr, &mut t);
                let mut x = std::mem::take(&mut t);
                for _ in 0..16 {
                    self.mont_mul(&x, &x, &mut t);
                    std::mem::swap(&mut x, &mut t);
                }
                self.mont_mul(&x, &s, &mut t);
                let mut out = Vec::with_capacity(self.n.len() * Self::BYTES);
                for limb in t.iter().rev() {
                    out.extend_from_slice(&limb.to_be_bytes());
                }
                out.drain(..out.len().checked_sub(self.len)?);
                Some(out)
            }
        }

        /// Big-endian bytes into `k` little-endian limbs; `None` when they do not fit.
        fn limbs_from_be(bytes: &[u8], k: usize) -> Option<Vec<$limb>> {
            let mut limbs = Vec::with_capacity(k);
            for chunk in bytes.rchunks($name::BYTES) {
                let mut limb: $limb = 0;
                for &b in chunk {
                    limb = (limb << 8) | b as $limb;
                }
                limbs.push(limb);
            }
            if limbs.len() > k {
                return None;
            }
            limbs.resize(k, 0);
            Some(limbs)
        }

        /// a < b, both `k` limbs little-endian.
        fn less(a: &[$limb], b: &[$limb]) -> bool {
            for (x, y) in a.iter().rev().zip(b.iter().rev()) {
                if x != y {
                    return x < y;
                }
            }
            false
        }

        /// a -= b mod 2^(BITS * k).
        fn sub_in_place(a: &mut [$limb], b: &[$limb]) {
            let mut borrow = false;
            for (x, &y) in a.iter_mut().zip(b) {
                let (d1, b1) = x.overflowing_sub(y);
                let (d2, b2) = d1.overflowing_sub(borrow as $limb);
                *x = d2;
                borrow = b1 || b2;
            }
        }
    };
}

/// 64-bit limbs (`modulus_impl!(Modulus, u64, u128)`) are twice as slow in V8: tests/rsa-bench.
pub mod limb32 {
    modulus_impl!(Modulus, u32, u64);
}
