//! A stream hash that does not depend on how the stream is cut into pieces, so a stream
//! written 1 byte at a time and one written at once hash alike (captures, the sim's END
//! record, frozen-state comparisons).
//!
//! The bulk of a stream is hashed in 64-byte stripes by eight independent 64-bit lanes (the
//! accumulate/scramble scheme of XXH3: each lane adds the 32x32-bit product of its keyed word
//! and its neighbour's plain word, the key depends on the stripe's place in its 1 KiB block,
//! and the lanes are scrambled after every block), so the work per byte has no serial chain
//! and vectorises (AVX2 when the CPU has it). Stripes are numbered from the start of the
//! stream and partial stripes are buffered: the value depends only on the bytes.
//! It is a fingerprint for equality within a run, not a cryptographic or persistent hash.

/// Bytes per stripe.
const STRIPE: usize = 64;
/// Stripes per block (the lanes are scrambled after each block).
const BLOCK: u64 = 16;

/// Key words: lane `i` of stripe `s` (in its block) uses `KEY[i + s]`.
const KEY: [u64; 8 + BLOCK as usize] = [
    0xbe4b_a423_396c_feb8,
    0x1cad_21f7_2c81_017c,
    0xdb97_9083_e96d_d4de,
    0x1f10_0bb8_1744_d4ee,
    0x7c01_812c_f721_ad1c,
    0xded4_6de9_8390_97db,
    0x7240_a4a4_b7b3_671f,
    0xcb79_e64e_ccc0_e578,
    0x8252_4daf_8b49_20cd,
    0x2ae1_7f58_6f5c_8e2c,
    0x4b74_d9f6_62a5_b2c3,
    0x6a86_d83a_6bd6_87d5,
    0x4de3_3e12_89c1_c7b4,
    0x2bdd_dba6_4ca1_b4cb,
    0x4f4c_ef8f_e1a4_fd1d,
    0xdd6c_d0f4_b8f3_3b6a,
    0x9df5_9fe4_bd7d_7b12,
    0xbc10_4a8e_3cc1_b83d,
    0xcf3c_ab14_1a7a_58f2,
    0x6c91_5cb2_ac5e_3ba2,
    0x8a56_7a02_42d5_3f2d,
    0xe9a3_2e8b_8c37_0c8e,
    0xb4b6_5f1c_93d4_c7e1,
    0x3c93_6ccd_af53_3b59,
];
const PRIME32_1: u64 = 0x9e37_79b1;
const PRIME64_1: u64 = 0x9e37_79b1_85eb_ca87;
const PRIME64_2: u64 = 0xc2b2_ae3d_27d4_eb4f;

#[inline(always)]
fn word(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[8 * i..8 * i + 8]);
    u64::from_le_bytes(a)
}

/// Adds one stripe, `s`-th in its block, to the lanes.
#[inline(always)]
fn accumulate(acc: &mut [u64; 8], stripe: &[u8], s: usize) {
    for i in 0..8 {
        let w = word(stripe, i);
        let k = w ^ KEY[i + s];
        acc[i ^ 1] = acc[i ^ 1].wrapping_add(w);
        acc[i] = acc[i].wrapping_add((k & 0xffff_ffff).wrapping_mul(k >> 32));
    }
}

#[inline(always)]
fn scramble(acc: &mut [u64; 8]) {
    for (i, a) in acc.iter_mut().enumerate() {
        let x = (*a ^ (*a >> 47)) ^ KEY[i + 3];
        *a = x.wrapping_mul(PRIME32_1);
    }
}

/// Whole stripes of `data` (a multiple of 64 bytes), the first being stripe number `n`.
#[inline(always)]
fn stripes_generic(acc: &mut [u64; 8], data: &[u8], mut n: u64) {
    for stripe in data.chunks_exact(STRIPE) {
        accumulate(acc, stripe, (n % BLOCK) as usize);
        n += 1;
        if n.is_multiple_of(BLOCK) {
            scramble(acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn stripes_avx2(acc: &mut [u64; 8], data: &[u8], n: u64) {
    stripes_generic(acc, data, n);
}

fn stripes(acc: &mut [u64; 8], data: &[u8], n: u64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above), which is all `stripes_avx2` was
        // compiled to use; the code is the same as `stripes_generic`.
        unsafe { stripes_avx2(acc, data, n) };
        return;
    }
    stripes_generic(acc, data, n);
}

fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// A hash of a byte stream that does not depend on how the stream is cut into pieces.
#[derive(Clone, Debug)]
pub struct StreamHash {
    acc: [u64; 8],
    buf: [u8; STRIPE],
    nbuf: usize,
    /// Whole stripes hashed so far.
    stripes: u64,
    len: u64,
}

impl Default for StreamHash {
    fn default() -> Self {
        StreamHash {
            acc: [
                PRIME32_1,
                PRIME64_1,
                PRIME64_2,
                0x1656_6791_9e37_79f9,
                0x85eb_ca77_c2b2_ae63,
                0x27d4_eb2f_1656_67c5,
                PRIME64_2 ^ PRIME64_1,
                0x9e37_79b9_7f4a_7c15,
            ],
            buf: [0; STRIPE],
            nbuf: 0,
            stripes: 0,
            len: 0,
        }
    }
}

impl StreamHash {
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.nbuf > 0 {
            let take = (STRIPE - self.nbuf).min(bytes.len());
            self.buf[self.nbuf..self.nbuf + take].copy_from_slice(&bytes[..take]);
            self.nbuf += take;
            bytes = &bytes[take..];
            if self.nbuf < STRIPE {
                return;
            }
            let buf = self.buf;
            stripes_generic(&mut self.acc, &buf, self.stripes);
            self.stripes += 1;
            self.nbuf = 0;
        }
        let whole = bytes.len() / STRIPE * STRIPE;
        if whole > 0 {
            stripes(&mut self.acc, &bytes[..whole], self.stripes);
            self.stripes += (whole / STRIPE) as u64;
        }
        let rest = &bytes[whole..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.nbuf = rest.len();
    }

    pub fn value(&self) -> u64 {
        let mut acc = self.acc;
        if self.nbuf > 0 {
            let mut last = [0u8; STRIPE];
            last[..self.nbuf].copy_from_slice(&self.buf[..self.nbuf]);
            accumulate(&mut acc, &last, (self.stripes % BLOCK) as usize);
        }
        let mut h = self.len.wrapping_mul(PRIME64_1) ^ (self.nbuf as u64).wrapping_mul(PRIME64_2);
        for i in 0..4 {
            h = h.wrapping_add(fold(acc[2 * i] ^ KEY[2 * i + 9], acc[2 * i + 1] ^ KEY[2 * i + 10]));
        }
        h ^= h >> 37;
        h = h.wrapping_mul(0x1656_6791_9e37_79f9);
        h ^ (h >> 32)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n as u32).map(|i| (i.wrapping_mul(7) ^ (i >> 5)) as u8).collect()
    }

    fn hash(d: &[u8]) -> u64 {
        let mut h = StreamHash::default();
        h.update(d);
        h.value()
    }

    #[test]
    fn hash_does_not_depend_on_segmentation() {
        let data = data(5000);
        let a = hash(&data);
        for seg in [1usize, 3, 7, 63, 64, 65, 127, 1023, 1024, 1025, 4096] {
            let mut b = StreamHash::default();
            for c in data.chunks(seg) {
                b.update(c);
            }
            assert_eq!(a, b.value(), "segmentation {seg}");
            assert_eq!(b.len(), 5000);
        }
        // Irregular pieces, with a value taken in the middle (value() does not consume).
        let mut c = StreamHash::default();
        let mut pos = 0;
        for (i, n) in [5usize, 200, 1, 64, 900, 3000, 830].iter().enumerate() {
            c.update(&data[pos..pos + n]);
            pos += n;
            if i == 3 {
                assert_eq!(c.value(), hash(&data[..pos]));
            }
        }
        assert_eq!(c.value(), a);
        // The vectorised path and the portable one agree.
        let mut acc1 = StreamHash::default().acc;
        let mut acc2 = acc1;
        stripes(&mut acc1, &data[..4096], 3);
        stripes_generic(&mut acc2, &data[..4096], 3);
        assert_eq!(acc1, acc2);
    }

    #[test]
    fn any_change_changes_the_hash() {
        let base = data(3000);
        let h = hash(&base);
        let mut seen = std::collections::BTreeSet::new();
        seen.insert(h);
        // Every single-bit flip, at a few bits per byte.
        for at in 0..base.len() {
            for bit in [0u8, 3, 7] {
                let mut d = base.clone();
                d[at] ^= 1 << bit;
                assert!(seen.insert(hash(&d)), "flip at {at} bit {bit} collides");
            }
        }
        // Two stripes of one block swapped; two blocks swapped.
        let mut d = base.clone();
        let (a, b) = d.split_at_mut(64);
        a.swap_with_slice(&mut b[..64]);
        assert_ne!(hash(&d), h);
        let mut d = base.clone();
        let (a, b) = d.split_at_mut(1024);
        a.swap_with_slice(&mut b[..1024]);
        assert_ne!(hash(&d), h);
        // Length matters, also with zeros; empty streams differ from a zero byte.
        assert_ne!(hash(&base[..2999]), h);
        assert_ne!(hash(&[]), hash(&[0]));
        assert_ne!(hash(&[0; 64]), hash(&[0; 65]));
        assert_ne!(hash(&[0; 1024]), hash(&[0; 1088]));
    }
}
