//! Sellers signed in by the CRM (X1): the CRM's backend signs a short-lived JWT
//! (`sub` = seller id, `aud`, `iss`, `exp`, `iat`) and the relay verifies it.
//!
//! Keys: an HS256 shared secret (≥ 32 bytes) and/or public keys from a JWKS file
//! (RS256 / ES256, chosen by the token's `kid`). The token's `alg` picks the key
//! family first, and each verification uses a `Validation` of exactly that one
//! algorithm, which must also be the key's: `alg: none`, an HMAC token against RSA
//! keys (or the reverse) and algorithms we do not take are refused before any
//! signature check. `exp`, `iat`, `iss`, `aud` and `sub` are required; `exp − iat`
//! must be at most `max_lifetime_secs` (600 by default); clock leeway is
//! `leeway_secs` (60 by default) for `exp`, `nbf` and an `iat` in the future.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::{AuthConfig, MIN_SECRET_BYTES};

/// Why an assertion is refused (the `reason` of a 401 `invalid_assertion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a JWS compact token, or claims of the wrong type, or no `sub`.
    Malformed,
    /// `alg: none`, an algorithm we do not take, or one the key is not for.
    Algorithm,
    /// No configured key has the token's `kid`.
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `aud` missing or not ours.
    Audience,
    /// `iss` missing or not the configured one.
    Issuer,
    /// No `exp` or `iat`, `iat` in the future, or `exp − iat` over the maximum.
    Lifetime,
    /// `sub` is not an active seller of the directory.
    UnknownSeller,
}

impl Refusal {
    /// Stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Audience => "audience",
            Self::Issuer => "issuer",
            Self::Lifetime => "lifetime",
            Self::UnknownSeller => "unknown_seller",
        }
    }
}

/// A verified assertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The seller id (`sub`).
    pub seller: String,
    /// When the token expires (Unix seconds, without leeway).
    pub exp: i64,
}

struct PublicKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies the CRM's assertions.
pub struct JwtVerifier {
    issuer: String,
    audience: String,
    max_lifetime: i64,
    leeway: u64,
    hmac: Option<DecodingKey>,
    public: Vec<PublicKey>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("hmac", &self.hmac.is_some())
            .field("public_keys", &self.public.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<f64>,
    iat: Option<f64>,
}

fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Result<Algorithm, String> {
    let by_key = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return Err("only RSA and P-256 keys are supported".into()),
    };
    match jwk.common.key_algorithm {
        None => Ok(by_key),
        Some(KeyAlgorithm::RS256) if by_key == Algorithm::RS256 => Ok(by_key),
        Some(KeyAlgorithm::ES256) if by_key == Algorithm::ES256 => Ok(by_key),
        Some(other) => Err(format!("algorithm {other:?} is not supported for this key")),
    }
}

impl JwtVerifier {
    /// From the `[auth]` settings (the secret already read from env or file); `None`
    /// when no key is configured.
    pub fn new(auth: &AuthConfig) -> Result<Option<Self>, String> {
        if !auth.configured() {
            return Ok(None);
        }
        let issuer = auth
            .issuer
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or("[auth] issuer (RELAY_JWT_ISSUER) is required")?;
        let audience = auth
            .audience
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or("[auth] audience (RELAY_JWT_AUDIENCE) is required")?;
        if auth.max_lifetime_secs == 0 || auth.max_lifetime_secs > 3600 {
            return Err("[auth] max_lifetime_secs: between 1 and 3600".into());
        }
        if auth.leeway_secs > 300 {
            return Err("[auth] leeway_secs: at most 300".into());
        }
        let hmac = match &auth.secret {
            None => None,
            Some(s) if s.expose_secret().len() < MIN_SECRET_BYTES => {
                return Err(format!(
                    "[auth] secret (RELAY_JWT_SECRET): at least {MIN_SECRET_BYTES} bytes"
                ))
            }
            Some(s) => Some(DecodingKey::from_secret(s.expose_secret().as_bytes())),
        };
        let mut public = Vec::new();
        if let Some(path) = &auth.jwks_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("jwks_file {}: {e}", path.display()))?;
            let set: JwkSet = serde_json::from_str(&text)
                .map_err(|e| format!("jwks_file {}: {e}", path.display()))?;
            for jwk in &set.keys {
                let kid = jwk.common.key_id.clone();
                let name = kid.as_deref().unwrap_or("(no kid)");
                if matches!(
                    jwk.common.public_key_use,
                    Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                ) {
                    continue;
                }
                let alg = jwk_algorithm(jwk).map_err(|e| format!("jwks key {name}: {e}"))?;
                let key =
                    DecodingKey::from_jwk(jwk).map_err(|e| format!("jwks key {name}: {e}"))?;
                public.push(PublicKey { kid, alg, key });
            }
            if public.is_empty() {
                return Err(format!("jwks_file {}: no signing keys", path.display()));
            }
        }
        Ok(Some(Self {
            issuer,
            audience,
            max_lifetime: auth.max_lifetime_secs as i64,
            leeway: auth.leeway_secs,
            hmac,
            public,
        }))
    }

    /// The key for a token's header, by algorithm family and `kid`.
    fn key(&self, header: &Header) -> Result<(Algorithm, &DecodingKey), Refusal> {
        let alg = match header.alg.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            _ => return Err(Refusal::Algorithm),
        };
        if alg == Algorithm::HS256 {
            return self
                .hmac
                .as_ref()
                .map(|k| (alg, k))
                .ok_or(Refusal::Algorithm);
        }
        if self.public.is_empty() {
            return Err(Refusal::Algorithm);
        }
        let key = match &header.kid {
            Some(kid) => self
                .public
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                .ok_or(Refusal::UnknownKey)?,
            None => {
                let mut same = self.public.iter().filter(|k| k.alg == alg);
                match (same.next(), same.next()) {
                    (Some(k), None) => k,
                    _ => return Err(Refusal::UnknownKey),
                }
            }
        };
        if key.alg != alg {
            return Err(Refusal::Algorithm);
        }
        Ok((alg, &key.key))
    }

    /// Verifies `token` at `now` (Unix seconds). Whether `sub` is an active seller is
    /// the caller's check.
    pub fn verify(&self, token: &str, now: i64) -> Result<Verified, Refusal> {
        let token = token.trim();
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 || parts[0].is_empty() || parts[1].is_empty() {
            return Err(Refusal::Malformed);
        }
        let header: Header = URL_SAFE_NO_PAD
            .decode(parts[0])
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Refusal::Malformed)?;
        if parts[2].is_empty() {
            // An unsigned token (`alg: none`, or a stripped signature).
            return Err(Refusal::Algorithm);
        }
        let (alg, key) = self.key(&header)?;
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.required_spec_claims =
            HashSet::from(["exp", "iss", "aud", "sub"].map(str::to_owned));
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => Refusal::Expired,
            ErrorKind::ImmatureSignature => Refusal::NotYetValid,
            ErrorKind::InvalidAudience => Refusal::Audience,
            ErrorKind::InvalidIssuer => Refusal::Issuer,
            ErrorKind::InvalidAlgorithm => Refusal::Algorithm,
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_) => Refusal::Signature,
            ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
                "exp" => Refusal::Lifetime,
                "aud" => Refusal::Audience,
                "iss" => Refusal::Issuer,
                _ => Refusal::Malformed,
            },
            _ => Refusal::Malformed,
        })?;
        let claims = data.claims;
        let seller = claims
            .sub
            .filter(|s| !s.trim().is_empty())
            .ok_or(Refusal::Malformed)?;
        let (Some(exp), Some(iat)) = (claims.exp, claims.iat) else {
            return Err(Refusal::Lifetime);
        };
        let (exp, iat) = (exp.floor() as i64, iat.floor() as i64);
        if exp - iat > self.max_lifetime || iat > now + self.leeway as i64 || exp < iat {
            return Err(Refusal::Lifetime);
        }
        Ok(Verified { seller, exp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header as JwtHeader};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(&AuthConfig {
            issuer: Some("https://crm.example.com".into()),
            audience: Some("sms-relay".into()),
            secret: Some(SECRET.into()),
            ..AuthConfig::default()
        })
        .unwrap()
        .unwrap()
    }

    fn hs(claims: serde_json::Value) -> String {
        encode(
            &JwtHeader::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    #[test]
    fn claims_are_checked() {
        let v = verifier();
        let t = now();
        let good = json!({"sub": "asha", "iss": "https://crm.example.com", "aud": "sms-relay", "iat": t, "exp": t + 300});
        assert_eq!(v.verify(&hs(good.clone()), t).unwrap().seller, "asha");
        let with = |k: &str, val: serde_json::Value| {
            let mut c = good.clone();
            c[k] = val;
            hs(c)
        };
        let without = |k: &str| {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove(k);
            hs(c)
        };
        assert_eq!(v.verify(&without("iat"), t), Err(Refusal::Lifetime));
        assert_eq!(v.verify(&without("exp"), t), Err(Refusal::Lifetime));
        assert_eq!(v.verify(&without("aud"), t), Err(Refusal::Audience));
        assert_eq!(v.verify(&without("iss"), t), Err(Refusal::Issuer));
        assert_eq!(v.verify(&without("sub"), t), Err(Refusal::Malformed));
        assert_eq!(
            v.verify(&with("exp", json!(t + 601)), t),
            Err(Refusal::Lifetime)
        );
        assert_eq!(
            v.verify(&with("iat", json!(t + 120)), t),
            Err(Refusal::Lifetime)
        );
        // Within the leeway, an expired token still passes; beyond it, not.
        let lately = json!({"sub": "asha", "iss": "https://crm.example.com", "aud": "sms-relay", "iat": t - 100, "exp": t - 30});
        assert!(v.verify(&hs(lately), t).is_ok());
        let expired = json!({"sub": "asha", "iss": "https://crm.example.com", "aud": "sms-relay", "iat": t - 400, "exp": t - 100});
        assert_eq!(v.verify(&hs(expired), t), Err(Refusal::Expired));
        assert_eq!(v.verify("a.b", t), Err(Refusal::Malformed));
        assert_eq!(v.verify("not-a-token", t), Err(Refusal::Malformed));
        // No key for RS256 here.
        let rs_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let body = hs(good).split('.').nth(1).unwrap().to_owned();
        assert_eq!(
            v.verify(&format!("{rs_header}.{body}.c2ln"), t),
            Err(Refusal::Algorithm)
        );
    }

    #[test]
    fn weak_or_incomplete_settings_are_refused() {
        let base = AuthConfig {
            issuer: Some("i".into()),
            audience: Some("a".into()),
            secret: Some("short".into()),
            ..AuthConfig::default()
        };
        assert!(JwtVerifier::new(&base).is_err());
        let no_issuer = AuthConfig {
            issuer: None,
            secret: Some(SECRET.into()),
            ..base.clone()
        };
        assert!(JwtVerifier::new(&no_issuer).is_err());
        assert!(JwtVerifier::new(&AuthConfig::default()).unwrap().is_none());
    }
}
