//! sha256 of local files, streamed. aws-lc-rs (SHA-NI/AVX2 assembly, optimised even in debug
//! builds) rather than the `sha2` crate: a plan hashes every needed binary (tens of MB each).

use std::io::Read as _;
use std::path::Path;

use aws_lc_rs::digest;

/// An incremental sha256 (for downloads hashed while they stream to disk).
pub struct Sha256(digest::Context);

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256(digest::Context::new(&digest::SHA256))
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// Lower-case hex of the digest.
    pub fn finish(self) -> String {
        hex(self.0.finish().as_ref())
    }
}

/// Lower-case hex sha256 of a file, read in chunks (binaries are tens of MB).
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
