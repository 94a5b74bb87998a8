//! A stream hash that does not depend on how the stream is cut into pieces, so a stream
//! written 1 byte at a time and one written at once hash alike (captures, the sim's END
//! record, frozen-state comparisons).

/// A hash of a byte stream that does not depend on how the stream is cut into pieces.
#[derive(Clone, Debug)]
pub struct StreamHash {
    h: u64,
    buf: [u8; 8],
    nbuf: usize,
    len: u64,
}

impl Default for StreamHash {
    fn default() -> Self {
        StreamHash { h: 0x9e37_79b9_7f4a_7c15, buf: [0; 8], nbuf: 0, len: 0 }
    }
}

impl StreamHash {
    fn mix(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(0x1000_0000_01b3).rotate_left(29) ^ (self.h >> 31);
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.nbuf > 0 {
            let take = (8 - self.nbuf).min(bytes.len());
            self.buf[self.nbuf..self.nbuf + take].copy_from_slice(&bytes[..take]);
            self.nbuf += take;
            bytes = &bytes[take..];
            if self.nbuf < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.buf);
            self.mix(w);
            self.nbuf = 0;
        }
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            self.mix(u64::from_le_bytes(a));
        }
        let rest = chunks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.nbuf = rest.len();
    }

    pub fn value(&self) -> u64 {
        let mut c = self.clone();
        let mut tail = [0u8; 8];
        tail[..c.nbuf].copy_from_slice(&c.buf[..c.nbuf]);
        c.mix(u64::from_le_bytes(tail) ^ (c.nbuf as u64) << 56);
        c.mix(c.len);
        c.h
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

    #[test]
    fn hash_does_not_depend_on_segmentation() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut a = StreamHash::default();
        a.update(&data);
        let mut b = StreamHash::default();
        for c in data.chunks(3) {
            b.update(c);
        }
        assert_eq!(a.value(), b.value());
    }
}
