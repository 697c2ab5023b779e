//! Hex digests, the one way oxi writes a hash (content ids, checksums, fingerprints).

use sha2::{Digest, Sha256};

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// SHA-256 of `data`, hex; `prefix_bytes` of the digest (all 32 when larger).
pub fn sha256_hex(data: &[u8], prefix_bytes: usize) -> String {
    let digest = Sha256::digest(data);
    hex(&digest[..prefix_bytes.min(digest.len())])
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        assert_eq!(
            super::sha256_hex(b"abc", 32),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(super::sha256_hex(b"abc", 4), "ba7816bf");
    }
}
