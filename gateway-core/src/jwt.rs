//! JWT (HS256) validation for the `jwt` filter.
//!
//! Only `HS256` is accepted: the algorithm is fixed by the route, never taken from the token, so
//! `alg: none` and algorithm-confusion tokens are refused. `exp` and `nbf` are checked when
//! present (`require_exp` makes `exp` mandatory), `iss` and `aud` when configured.

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
    /// `alg` is not `HS256`.
    Algorithm,
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
    key: Vec<u8>,
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

impl JwtValidator {
    /// A validator for HS256 tokens signed with `secret`.
    pub fn new(
        secret: &[u8],
        issuer: Option<String>,
        audience: Option<String>,
        require_exp: bool,
        leeway_secs: u64,
    ) -> Self {
        JwtValidator {
            key: secret.to_vec(),
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
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(JwtError::Algorithm);
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&token.as_bytes()[..h.len() + 1 + p.len()]);
        mac.verify_slice(&sig).map_err(|_| JwtError::Signature)?;
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
