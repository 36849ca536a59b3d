//! JWT validation for the `jwt` filter: HS256 with a shared secret, or RS256/ES256 with the
//! public keys of a JWKS (RFC 7517).
//!
//! The algorithm is fixed by the key, never chosen by the token: an HMAC secret takes `HS256`
//! only, an RSA key `RS256` only, an EC P-256 key `ES256` only. So `alg: none`, and
//! algorithm-confusion tokens (`HS256` signed with an RSA public key as the secret) are
//! refused. With a JWKS the token's `kid` picks the key (unknown `kid`: refused); without a
//! `kid` every key of the algorithm's type is tried. A JWK's own `alg`, when present, must equal
//! the token's. `exp` and `nbf` are checked when present (`require_exp` makes `exp`
//! mandatory), `iss` and `aud` when configured.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a token was refused (the gateway answers `401`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// No `Authorization: Bearer` token.
    Missing,
    /// Not three base64url parts, or not JSON.
    Malformed,
    /// `alg` does not fit the key (`none`, `HS256` against a JWKS, `RS256` against an EC key...).
    Algorithm,
    /// The token's `kid` is not in the JWKS.
    UnknownKey,
    /// The signature does not match.
    Signature,
    /// `exp` passed (or missing when required), or `nbf` not reached.
    Expired,
    /// `iss` or `aud` does not match.
    Claims,
}

/// A compiled `jwt` filter.
#[derive(Clone)]
pub struct JwtValidator {
    key: Keys,
    issuer: Option<String>,
    audience: Option<String>,
    require_exp: bool,
    leeway_secs: u64,
}

impl std::fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtValidator")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum Keys {
    Hmac(Vec<u8>),
    Jwks(Jwks),
}

/// The algorithms the gateway verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Hs256,
    Rs256,
    Es256,
}

impl Alg {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "HS256" => Some(Alg::Hs256),
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
}

#[derive(Clone)]
enum PublicKey {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point (`04 || x || y`).
    P256(Vec<u8>),
}

impl PublicKey {
    fn alg(&self) -> Alg {
        match self {
            PublicKey::Rsa { .. } => Alg::Rs256,
            PublicKey::P256(_) => Alg::Es256,
        }
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        use ring::signature;
        match self {
            PublicKey::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
                .is_ok(),
            PublicKey::P256(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
        }
    }
}

#[derive(Clone)]
struct Jwk {
    kid: Option<String>,
    /// The JWK's `alg`, if it names one.
    alg: Option<String>,
    key: PublicKey,
}

/// The signature keys of a JWKS document (RSA of at least 2048 bits, and EC P-256).
///
/// ```
/// use palisade_gateway::jwt::Jwks;
/// let err = Jwks::from_json(r#"{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}"#)
///     .unwrap_err();
/// assert_eq!(err, "keys[0].crv: `P-384` is not supported (only P-256)");
/// ```
#[derive(Clone)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, k.key.alg())))
            .finish()
    }
}

impl Jwks {
    /// Parses a JWKS. Keys with `use` other than `sig` and key types other than `RSA` and `EC`
    /// (`oct`, `OKP`) are skipped; a malformed RSA or EC key is an error naming it
    /// (`keys[1].n: ...`), and so is a set with no usable key.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let list = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or("no `keys` array")?;
        let mut keys = Vec::new();
        for (i, k) in list.iter().enumerate() {
            let field = |name: &str| -> Result<Option<&str>, String> {
                match k.get(name) {
                    None => Ok(None),
                    Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
                    Some(_) => Err(format!("keys[{i}].{name}: not a string")),
                }
            };
            let b64 = |name: &str| -> Result<Vec<u8>, String> {
                let v = field(name)?.ok_or_else(|| format!("keys[{i}].{name}: missing"))?;
                URL_SAFE_NO_PAD
                    .decode(v.trim_end_matches('='))
                    .map_err(|e| format!("keys[{i}].{name}: not base64url ({e})"))
            };
            if field("use")?.is_some_and(|u| u != "sig") {
                continue;
            }
            let key = match field("kty")? {
                Some("RSA") => {
                    let n = b64("n")?;
                    let e = b64("e")?;
                    let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
                    if n.len() * 8 < 2048 {
                        return Err(format!(
                            "keys[{i}].n: RSA modulus of {} bits, at least 2048 needed",
                            n.len() * 8
                        ));
                    }
                    PublicKey::Rsa { n, e }
                }
                Some("EC") => {
                    match field("crv")? {
                        Some("P-256") => {}
                        Some(c) => {
                            return Err(format!(
                                "keys[{i}].crv: `{c}` is not supported (only P-256)"
                            ));
                        }
                        None => return Err(format!("keys[{i}].crv: missing")),
                    }
                    let (x, y) = (b64("x")?, b64("y")?);
                    if x.len() != 32 || y.len() != 32 {
                        return Err(format!("keys[{i}]: P-256 x and y must be 32 bytes each"));
                    }
                    let mut point = Vec::with_capacity(65);
                    point.push(4);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    PublicKey::P256(point)
                }
                Some(other) => {
                    tracing::debug!(kty = other, "JWKS key type not supported; skipped");
                    continue;
                }
                None => return Err(format!("keys[{i}].kty: missing")),
            };
            let alg = field("alg")?.map(str::to_owned);
            if let Some(a) = &alg
                && Alg::parse(a) != Some(key.alg())
            {
                return Err(format!(
                    "keys[{i}].alg: `{a}` does not fit the key (expected {:?})",
                    key.alg()
                ));
            }
            keys.push(Jwk {
                kid: field("kid")?.map(str::to_owned),
                alg,
                key,
            });
        }
        if keys.is_empty() {
            return Err("no RSA or EC P-256 signature key in `keys`".into());
        }
        Ok(Jwks { keys })
    }

    /// Reads and parses a JWKS file; errors start with the file name.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::from_json(&text).map_err(|m| format!("{}: {m}", path.display()))
    }

    fn verify(&self, alg: Alg, kid: Option<&str>, msg: &[u8], sig: &[u8]) -> Result<(), JwtError> {
        let candidates = self.keys.iter().filter(|k| match kid {
            Some(kid) => k.kid.as_deref() == Some(kid),
            None => true,
        });
        let mut found = false;
        for k in candidates {
            found = true;
            if k.key.alg() != alg || k.alg.as_deref().is_some_and(|a| Alg::parse(a) != Some(alg)) {
                continue;
            }
            if k.key.verify(msg, sig) {
                return Ok(());
            }
            if kid.is_some() {
                return Err(JwtError::Signature);
            }
        }
        match (found, kid) {
            (false, Some(_)) => Err(JwtError::UnknownKey),
            // A kid whose key is of another type, or no key of the algorithm's type.
            _ if !self.keys.iter().any(|k| {
                k.key.alg() == alg && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
            }) =>
            {
                Err(JwtError::Algorithm)
            }
            _ => Err(JwtError::Signature),
        }
    }
}

impl JwtValidator {
    /// A validator for RS256/ES256 tokens signed by a key of `jwks`.
    pub fn with_jwks(
        jwks: Jwks,
        issuer: Option<String>,
        audience: Option<String>,
        require_exp: bool,
        leeway_secs: u64,
    ) -> Self {
        JwtValidator {
            key: Keys::Jwks(jwks),
            issuer,
            audience,
            require_exp,
            leeway_secs,
        }
    }

    /// A validator for HS256 tokens signed with `secret`.
    pub fn new(
        secret: &[u8],
        issuer: Option<String>,
        audience: Option<String>,
        require_exp: bool,
        leeway_secs: u64,
    ) -> Self {
        JwtValidator {
            key: Keys::Hmac(secret.to_vec()),
            issuer,
            audience,
            require_exp,
            leeway_secs,
        }
    }

    /// Checks a compact token at time `now` (seconds since the epoch).
    ///
    /// ```
    /// use palisade_gateway::jwt::{JwtError, JwtValidator};
    /// let v = JwtValidator::new(b"secret", None, None, false, 0);
    /// // {"alg":"none"} tokens are refused whatever their payload.
    /// assert_eq!(v.validate("eyJhbGciOiJub25lIn0.e30.", 0), Err(JwtError::Algorithm));
    /// ```
    pub fn validate(&self, token: &str, now: u64) -> Result<(), JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header = URL_SAFE_NO_PAD.decode(h).map_err(|_| JwtError::Malformed)?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|_| JwtError::Malformed)?;
        let alg = header
            .get("alg")
            .and_then(|a| a.as_str())
            .and_then(Alg::parse)
            .ok_or(JwtError::Algorithm)?;
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        match (&self.key, alg) {
            (Keys::Hmac(key), Alg::Hs256) => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                mac.update(signed);
                mac.verify_slice(&sig).map_err(|_| JwtError::Signature)?;
            }
            (Keys::Jwks(jwks), Alg::Rs256 | Alg::Es256) => {
                let kid = match header.get("kid") {
                    None => None,
                    Some(serde_json::Value::String(k)) => Some(k.as_str()),
                    Some(_) => return Err(JwtError::Malformed),
                };
                jwks.verify(alg, kid, signed, &sig)?;
            }
            _ => return Err(JwtError::Algorithm),
        }
        let claims = URL_SAFE_NO_PAD.decode(p).map_err(|_| JwtError::Malformed)?;
        let claims: serde_json::Value =
            serde_json::from_slice(&claims).map_err(|_| JwtError::Malformed)?;
        match claims.get("exp").map(|e| e.as_u64()) {
            Some(Some(exp)) if now > exp.saturating_add(self.leeway_secs) => {
                return Err(JwtError::Expired);
            }
            Some(None) => return Err(JwtError::Malformed),
            None if self.require_exp => return Err(JwtError::Expired),
            _ => {}
        }
        if let Some(nbf) = claims.get("nbf").and_then(|n| n.as_u64())
            && now.saturating_add(self.leeway_secs) < nbf
        {
            return Err(JwtError::Expired);
        }
        if let Some(iss) = &self.issuer
            && claims.get("iss").and_then(|i| i.as_str()) != Some(iss.as_str())
        {
            return Err(JwtError::Claims);
        }
        if let Some(aud) = &self.audience {
            let ok = match claims.get("aud") {
                Some(serde_json::Value::String(a)) => a == aud,
                Some(serde_json::Value::Array(a)) => {
                    a.iter().any(|x| x.as_str() == Some(aud.as_str()))
                }
                _ => false,
            };
            if !ok {
                return Err(JwtError::Claims);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], header: &str, claims: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let p = URL_SAFE_NO_PAD.encode(claims);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{h}.{p}.{s}")
    }

    #[test]
    fn rfc7515_example_verifies() {
        // RFC 7515 A.1 (HS256), with its exp of 1300819380.
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let v = JwtValidator::new(&key, Some("joe".into()), None, true, 0);
        assert_eq!(v.validate(token, 1_300_819_380), Ok(()));
        assert_eq!(v.validate(token, 1_300_819_381), Err(JwtError::Expired));
    }

    #[test]
    fn refuses_tampering_and_wrong_claims() {
        let v = JwtValidator::new(b"k", Some("me".into()), Some("api".into()), true, 5);
        let good = sign(
            b"k",
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"me","aud":["x","api"],"exp":100}"#,
        );
        assert_eq!(v.validate(&good, 100), Ok(()));
        assert_eq!(v.validate(&good, 105), Ok(()), "leeway");
        assert_eq!(v.validate(&good, 106), Err(JwtError::Expired));
        let other_key = sign(
            b"x",
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"me","aud":"api","exp":100}"#,
        );
        assert_eq!(v.validate(&other_key, 1), Err(JwtError::Signature));
        let hs512 = sign(
            b"k",
            r#"{"alg":"HS512"}"#,
            r#"{"iss":"me","aud":"api","exp":100}"#,
        );
        assert_eq!(v.validate(&hs512, 1), Err(JwtError::Algorithm));
        let iss = sign(
            b"k",
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"you","aud":"api","exp":100}"#,
        );
        assert_eq!(v.validate(&iss, 1), Err(JwtError::Claims));
        let no_exp = sign(b"k", r#"{"alg":"HS256"}"#, r#"{"iss":"me","aud":"api"}"#);
        assert_eq!(v.validate(&no_exp, 1), Err(JwtError::Expired));
        let nbf = sign(
            b"k",
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"me","aud":"api","exp":100,"nbf":50}"#,
        );
        assert_eq!(v.validate(&nbf, 40), Err(JwtError::Expired));
        // Payload swapped under a valid signature.
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"iss":"me","aud":"api","exp":999999}"#);
        parts[1] = &forged;
        assert_eq!(v.validate(&parts.join("."), 1), Err(JwtError::Signature));
        assert_eq!(v.validate("a.b", 1), Err(JwtError::Malformed));
    }
}
