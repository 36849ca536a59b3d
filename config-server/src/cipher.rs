//! `{cipher}` values: AES-256-GCM with a random 96-bit nonce, written as hex of
//! `nonce || ciphertext || tag` (Spring writes hex too, so the values look alike in a repo).

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};

/// The server's encryption key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(AES-256-GCM, key hidden)")
    }
}

/// Why a key or a ciphertext was refused. Carries no key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherError(&'static str);

impl std::fmt::Display for CipherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for CipherError {}

impl Cipher {
    /// A cipher from a 256-bit key written as 64 hex digits (surrounding whitespace ignored).
    ///
    /// # Errors
    /// When the text is not 64 hex digits.
    pub fn from_hex(key: &str) -> Result<Self, CipherError> {
        let bytes =
            hex::decode(key.trim()).map_err(|_| CipherError("the key must be 64 hex digits"))?;
        if bytes.len() != 32 {
            return Err(CipherError("the key must be 64 hex digits (256 bits)"));
        }
        Ok(Cipher {
            aead: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }

    /// A cipher from a key file holding 64 hex digits.
    ///
    /// # Errors
    /// When the file cannot be read or does not hold a key.
    pub fn from_file(path: &std::path::Path) -> Result<Self, CipherError> {
        let text =
            std::fs::read_to_string(path).map_err(|_| CipherError("cannot read the key file"))?;
        Self::from_hex(&text)
    }

    /// Encrypts `plain`; the result goes after `{cipher}` in a config file.
    pub fn encrypt(&self, plain: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .aead
            .encrypt(&nonce, plain.as_bytes())
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        hex::encode(out)
    }

    /// Decrypts what [`encrypt`](Cipher::encrypt) wrote.
    ///
    /// # Errors
    /// Bad hex, a short value, a wrong key or tampered data.
    pub fn decrypt(&self, text: &str) -> Result<String, CipherError> {
        let bytes = hex::decode(text.trim()).map_err(|_| CipherError("not hex"))?;
        if bytes.len() < 12 + 16 {
            return Err(CipherError("too short"));
        }
        let (nonce, ct) = bytes.split_at(12);
        let plain = self
            .aead
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| CipherError("cannot decrypt (wrong key or tampered value)"))?;
        String::from_utf8(plain).map_err(|_| CipherError("not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn roundtrip_and_tamper_detection() {
        let c = Cipher::from_hex(KEY).unwrap();
        let a = c.encrypt("s3cret");
        let b = c.encrypt("s3cret");
        assert_ne!(a, b, "a fresh nonce per value");
        assert_eq!(c.decrypt(&a).unwrap(), "s3cret");
        let mut t = a.clone().into_bytes();
        let last = t.len() - 1;
        t[last] = if t[last] == b'0' { b'1' } else { b'0' };
        assert!(c.decrypt(std::str::from_utf8(&t).unwrap()).is_err());
        let other = Cipher::from_hex(&KEY.replace("00", "ff")).unwrap();
        assert!(other.decrypt(&a).is_err());
        assert!(Cipher::from_hex("abc").is_err());
        assert!(!format!("{c:?}").contains("0001"));
    }
}
