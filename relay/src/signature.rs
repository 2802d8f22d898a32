//! `X-Twilio-Signature`: HMAC-SHA1 over the full callback URL plus the POST
//! parameters sorted by name (then value), base64-encoded, compared in constant time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// Computes the signature of a form POST to `url` with `params`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL with and without the scheme's default port, as provider validators try both.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // Ports follow the last ':' outside an IPv6 literal's brackets.
    let port_at = authority
        .rfind(':')
        .filter(|&i| !authority[i..].contains(']'));
    match port_at {
        Some(i) if &authority[i + 1..] == default => {
            out.push(format!("{scheme}://{}{tail}", &authority[..i]));
        }
        Some(_) => {}
        None => out.push(format!("{scheme}://{authority}:{default}{tail}")),
    }
    out
}

/// Whether `signature` is valid for a POST of `params` to `url` (with or without its
/// default port). Constant-time in the comparison.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    url_variants(url).iter().any(|u| {
        let expected = sign(auth_token, u, params);
        expected
            .as_bytes()
            .ct_eq(signature.trim().as_bytes())
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn call() -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    /// The published vectors (provider facts).
    #[test]
    fn published_vectors() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(sign("12345", url, &call()), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert_eq!(
            sign(
                "12345",
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &call()
            ),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        assert_eq!(
            sign(
                "12345",
                "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
                &call()
            ),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        );
        assert_eq!(
            sign(
                "12345",
                "http://mycompany.com:80/myapp.php?foo=1&bar=2",
                &call()
            ),
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        );
        let repeated = params(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            sign("12345", url, &repeated),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn verifies_with_or_without_default_port() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert!(verify(
            "12345",
            url,
            &call(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(verify(
            "12345",
            url,
            &call(),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        assert!(verify(
            "12345",
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &call(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(verify(
            "12345",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &call(),
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        ));
    }

    #[test]
    fn any_change_breaks_it() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(!verify("12346", url, &call(), good));
        assert!(!verify(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &call(),
            good
        ));
        let mut p = call();
        p[2].1 = "1235".into();
        assert!(!verify("12345", url, &p, good));
        assert!(!verify(
            "12345",
            url,
            &call(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8"
        ));
        assert!(!verify("12345", url, &call(), ""));
        for i in 0..good.len() {
            let mut bad = good.as_bytes().to_vec();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            assert!(!verify(
                "12345",
                url,
                &call(),
                std::str::from_utf8(&bad).unwrap()
            ));
        }
    }
}
