//! Serial numbers: 16 random bytes, positive, no leading zero byte. The randomness is injected
//! so that everything but key bytes is reproducible in tests and golden files.

/// A source of raw randomness for certificate serial numbers.
pub trait SerialSource {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

impl<F: FnMut(&mut [u8])> SerialSource for F {
    fn fill(&mut self, buf: &mut [u8]) {
        self(buf)
    }
}

/// A deterministic source (SplitMix64) for tests, golden files and benchmarks. Never use it for
/// a real cluster.
#[derive(Debug, Clone)]
pub struct SeededSerials {
    state: u64,
}

impl SeededSerials {
    pub fn new(seed: u64) -> Self {
        SeededSerials { state: seed }
    }
}

impl SerialSource for SeededSerials {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_be_bytes()[..chunk.len()]);
        }
    }
}

/// Draws one serial: 16 bytes, top bit clear (positive) and first byte non-zero (so the DER
/// INTEGER is exactly 16 bytes long).
pub(crate) fn next_serial(source: &mut dyn SerialSource) -> [u8; 16] {
    let mut serial = [0u8; 16];
    source.fill(&mut serial);
    serial[0] &= 0x7f;
    if serial[0] == 0 {
        serial[0] = 0x01;
    }
    serial
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_positive_sixteen_bytes_and_seeded_sources_repeat() {
        let mut a = SeededSerials::new(7);
        let mut b = SeededSerials::new(7);
        let mut zeros = |buf: &mut [u8]| buf.fill(0xff);
        for _ in 0..100 {
            let s = next_serial(&mut a);
            assert_eq!(s, next_serial(&mut b));
            assert!(s[0] & 0x80 == 0 && s[0] != 0);
        }
        assert_eq!(next_serial(&mut zeros)[0], 0x7f);
        let mut z = |buf: &mut [u8]| buf.fill(0);
        assert_eq!(next_serial(&mut z)[0], 0x01);
    }
}
