
/// Montgomery arithmetic on 26-bit limbs held in u64 with deferred carries: a product is below
/// 2^52, so a column takes all 2 * limbs (at most 316 for 4096 bits) products without overflow.
/// V8 then spends one multiply and one add per product, no carry handling.
pub mod lazy_impl {
    const W: u32 = 26;
    const MASK: u64 = (1 << W) - 1;

    pub struct Modulus {
        n: Vec<u64>,
        n0inv: u64,
        rr: Vec<u64>,
        len: usize,
    }

    impl Modulus {
        pub fn new(n: &[u8]) -> Option<Self> {
            let first = n.iter().position(|&b| b != 0)?;
            let n = n.get(first..)?;
            let k = (n.len() * 8).div_ceil(W as usize);
            let limbs = from_be(n, k)?;
            let low = *limbs.first()?;
            if low & 1 == 0 {
                return None;
            }
            let mut inv: u64 = 1;
            for _ in 0..6 {
                inv = inv.wrapping_mul(2u64.wrapping_sub(low.wrapping_mul(inv)));
            }
            let mut m = Modulus { n: limbs, n0inv: inv.wrapping_neg() & MASK, rr: Vec::new(), len: n.len() };
            m.rr = m.r_squared();
            Some(m)
        }

        pub fn len(&self) -> usize {
            self.len
        }

        fn r_squared(&self) -> Vec<u64> {
            let k = self.n.len();
            let top = self.n.last().copied().unwrap_or(1);
            let bits = (k as u32 - 1) * W + (64 - top.leading_zeros());
            let mut x = vec![0u64; k];
            let bit = bits - 1;
            if let Some(limb) = x.get_mut((bit / W) as usize) {
                *limb = 1 << (bit % W);
            }
            for _ in bit..2 * W * k as u32 {
                let mut carry = 0;
                for limb in x.iter_mut() {
                    let v = (*limb << 1) | carry;
                    carry = v >> W;
                    *limb = v & MASK;
                }
                if carry != 0 || !less(&x, &self.n) {
                    sub_in_place(&mut x, &self.n);
                }
            }
            x
        }

        /// a * b * R^-1 mod n for normalized a, b < n; the result normalized and < n.
        fn mont_mul(&self, a: &[u64], b: &[u64], t: &mut Vec<u64>) {
            let k = self.n.len();
            t.clear();
            t.resize(k + 1, 0);
            let (Some(&n0), Some(&b0)) = (self.n.first(), b.first()) else {
                return;
            };
            for &ai in a {
                let Some((t0, rest)) = t.split_first_mut() else {
                    return;
                };
                let x = *t0 + ai * b0;
                let m = (x.wrapping_mul(self.n0inv)) & MASK;
                let mut carry = (x + m * n0) >> W;
                let mut prev = t0;
                for ((slot, &bj), &nj) in rest.iter_mut().zip(b.iter().skip(1)).zip(self.n.iter().skip(1)) {
                    *prev = *slot + ai * bj + m * nj + carry;
                    carry = 0;
                    prev = slot;
                }
                *prev = carry;
            }
            // Normalize to 26-bit limbs.
            let mut carry = 0;
            for limb in t.iter_mut() {
                let v = *limb + carry;
                *limb = v & MASK;
                carry = v >> W;
            }
            let overflow = t.pop().unwrap_or(0);
            if overflow != 0 || !less(t, &self.n) {
                sub_in_place(t, &self.n);
            }
        }

        pub fn pow65537(&self, s: &[u8]) -> Option<Vec<u8>> {
            if s.len() != self.len {
                return None;
            }
            let s = from_be(s, self.n.len())?;
            if !less(&s, &self.n) {
                return None;
            }
            let mut t = Vec::with_capacity(self.n.len() + 1);
            self.mont_mul(&s, &self.rr, &mut t);
            let mut x = std::mem::take(&mut t);
            for _ in 0..16 {
                self.mont_mul(&x, &x, &mut t);
                std::mem::swap(&mut x, &mut t);
            }
            self.mont_mul(&x, &s, &mut t);
            Some(to_be(&t, self.len))
        }
    }

    fn from_be(bytes: &[u8], k: usize) -> Option<Vec<u64>> {
        let mut limbs = vec![0u64; k];
        let mut acc: u64 = 0;
        let mut bits = 0;
        let mut out = limbs.iter_mut();
        for &b in bytes.iter().rev() {
            acc |= u64::from(b) << bits;
            bits += 8;
            if bits >= W {
                *out.next()? = acc & MASK;
                acc >>= W;
                bits -= W;
            }
        }
        if acc != 0 {
            *out.next()? = acc;
        }
        Some(limbs)
    }

    fn to_be(limbs: &[u64], len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut acc: u64 = 0;
        let mut bits = 0;
        let mut it = limbs.iter();
        while out.len() < len {
            if bits < 8 {
                acc |= it.next().copied().unwrap_or(0) << bits;
                bits += W;
            }
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
        out.reverse();
        out
    }

    fn less(a: &[u64], b: &[u64]) -> bool {
        for (x, y) in a.iter().rev().zip(b.iter().rev()) {
            if x != y {
                return x < y;
            }
        }
        false
    }

    fn sub_in_place(a: &mut [u64], b: &[u64]) {
        let mut borrow = 0u64;
        for (x, &y) in a.iter_mut().zip(b) {
            let v = x.wrapping_sub(y).wrapping_sub(borrow);
            borrow = v >> 63;
            *x = v & MASK;
        }
    }
}
