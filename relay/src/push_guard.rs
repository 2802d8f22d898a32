//! No way into the relay's network through push (X2).
//!
//! A browser hands us a push endpoint URL and the relay later POSTs to it, so the
//! endpoint is a request the client aims. Two gates:
//! - at registration, [`check_endpoint`]: `https` only, the host a DNS name (no IP
//!   literal in any notation — the WHATWG parser turns `2130706433`, `0x7f000001`,
//!   `0177.0.0.1` and `127.1` into IPv4 addresses, which are refused like dotted ones
//!   and `[::1]`), no local names (`localhost`, `.localhost`, `.local`, `.internal`,
//!   `.home.arpa`, single labels), no credentials, no port but 443;
//! - at send time, the HTTP client resolves names through [`GuardedResolver`], which
//!   drops every non-public address ([`is_public`]) from the very lookup the
//!   connection then uses (no DNS-rebinding window), follows no redirects and uses
//!   no proxy ([`client`]). Stored endpoints are re-checked with [`check_endpoint`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Longest endpoint URL accepted.
pub const MAX_ENDPOINT_LEN: usize = 2048;

/// Why an endpoint is refused (the `reason` of a 422 `push_endpoint_refused`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointRefusal {
    /// Not a URL, or too long.
    Malformed,
    /// Not `https`.
    Scheme,
    /// The host is an IP address (in any notation).
    IpLiteral,
    /// `localhost`, a local-only suffix, or a single-label name.
    LocalName,
    /// A port other than 443.
    Port,
    /// User name or password in the URL.
    Credentials,
}

impl EndpointRefusal {
    /// Stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Scheme => "scheme",
            Self::IpLiteral => "ip_literal",
            Self::LocalName => "local_name",
            Self::Port => "port",
            Self::Credentials => "credentials",
        }
    }
}

const LOCAL_SUFFIXES: &[&str] = &["localhost", "local", "internal", "home.arpa"];

/// Checks a push endpoint a client registers (and again before each send).
pub fn check_endpoint(endpoint: &str) -> Result<Url, EndpointRefusal> {
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(EndpointRefusal::Malformed);
    }
    let url = Url::parse(endpoint.trim()).map_err(|_| EndpointRefusal::Malformed)?;
    if url.scheme() != "https" {
        return Err(EndpointRefusal::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointRefusal::Credentials);
    }
    // `port()` is `None` for the scheme's default (443), written or not.
    if url.port().is_some() {
        return Err(EndpointRefusal::Port);
    }
    let domain = match url.host() {
        Some(Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => return Err(EndpointRefusal::IpLiteral),
        None => return Err(EndpointRefusal::Malformed),
    };
    let domain = domain.trim_end_matches('.');
    if domain.is_empty() || domain.contains("..") {
        return Err(EndpointRefusal::Malformed);
    }
    // The parser already turned numeric hosts into addresses; a name whose last label
    // still looks numeric is refused rather than left to a resolver's reading of it.
    let last = domain.rsplit('.').next().unwrap_or_default();
    if last.chars().all(|c| c.is_ascii_digit())
        || (last.starts_with("0x") && last[2..].chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(EndpointRefusal::IpLiteral);
    }
    if !domain.contains('.')
        || LOCAL_SUFFIXES
            .iter()
            .any(|s| domain == *s || domain.ends_with(&format!(".{s}")))
    {
        return Err(EndpointRefusal::LocalName);
    }
    Ok(url)
}

/// Whether a doorbell may connect to `ip`: no loopback, private, link-local, CGNAT,
/// multicast, unspecified, broadcast, documentation, benchmarking, reserved, cloud
/// metadata, IPv4-mapped/-compatible, NAT64, 6to4, Teredo, ULA or site-local address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const BLOCKED: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT (and 100.100.100.200, a cloud metadata address)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, cloud metadata 169.254.169.254
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    !BLOCKED.iter().any(|(net, bits)| in_v4(ip, *net, *bits))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    const BLOCKED: &[([u16; 8], u32)] = &[
        ([0, 0, 0, 0, 0, 0, 0, 0], 96),          // ::, ::1, IPv4-compatible
        ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),     // IPv4-mapped
        ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),  // NAT64
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),  // local-use NAT64
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),     // Teredo
        ([0x2001, 2, 0, 0, 0, 0, 0, 0], 48),     // benchmarking
        ([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28),  // ORCHID
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),     // 6to4 (embeds any IPv4)
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),     // documentation
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),      // unique local (fd00:ec2::254 metadata)
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),     // link-local
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),     // site-local (deprecated)
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),      // multicast
    ];
    !BLOCKED.iter().any(|(net, bits)| in_v6(ip, *net, *bits))
}

/// A boxed future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Name → addresses (the system resolver, or a test's table).
pub trait Lookup: Send + Sync {
    /// All addresses of `host` (port 0 means "the URL's port").
    fn lookup(&self, host: String) -> BoxFuture<io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, 0)).await?.collect()) })
    }
}

/// A fixed table (tests: point a push host at a local push service).
pub struct StaticLookup(pub HashMap<String, Vec<SocketAddr>>);

impl Lookup for StaticLookup {
    fn lookup(&self, host: String) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let found = self.0.get(&host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
        })
    }
}

/// How doorbells reach push services.
#[derive(Clone, Default)]
pub struct PushNetwork {
    /// The lookup (default: the system resolver).
    pub lookup: Option<Arc<dyn Lookup>>,
    /// Let doorbells reach non-public addresses: demo mode only (a start refuses it
    /// otherwise), for a push service on this machine.
    pub allow_private: bool,
    /// An extra trusted root certificate (PEM) for such a local push service: demo
    /// mode only.
    pub extra_root_pem: Option<Vec<u8>>,
}

impl fmt::Debug for PushNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushNetwork")
            .field("custom_lookup", &self.lookup.is_some())
            .field("allow_private", &self.allow_private)
            .field("extra_root", &self.extra_root_pem.is_some())
            .finish()
    }
}

/// A DNS resolver for reqwest that hands the connector only public addresses.
pub struct GuardedResolver {
    lookup: Arc<dyn Lookup>,
    allow_private: bool,
}

impl GuardedResolver {
    /// Over `lookup`; `allow_private` turns the filter off (demo only).
    pub fn new(lookup: Arc<dyn Lookup>, allow_private: bool) -> Self {
        Self {
            lookup,
            allow_private,
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.lookup.clone();
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all = lookup.lookup(host.clone()).await?;
            let kept: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if kept.is_empty() {
                tracing::warn!(%host, addresses = ?all, "push host has no public address; not connecting");
                return Err(Box::new(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "push host resolves to no public address",
                ))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client for doorbells: guarded resolver, no redirects, no proxy.
pub fn client(net: &PushNetwork) -> Result<reqwest::Client, String> {
    let lookup = net.lookup.clone().unwrap_or_else(|| Arc::new(SystemLookup));
    let mut builder = reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(lookup, net.allow_private)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if let Some(pem) = &net.extra_root_pem {
        let cert = reqwest::Certificate::from_pem(pem).map_err(|e| format!("push root: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| format!("push client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        use EndpointRefusal::*;
        let ok = "https://fcm.googleapis.com/fcm/send/abc:def";
        assert!(check_endpoint(ok).is_ok());
        assert!(check_endpoint("https://updates.push.services.mozilla.com:443/wpush/v2/x").is_ok());
        for (url, why) in [
            ("http://fcm.googleapis.com/x", Scheme),
            ("ftp://fcm.googleapis.com/x", Scheme),
            ("https://127.0.0.1/x", IpLiteral),
            ("https://2130706433/x", IpLiteral),
            ("https://0x7f000001/x", IpLiteral),
            ("https://0177.0.0.1/x", IpLiteral),
            ("https://127.1/x", IpLiteral),
            ("https://0x7f.1/x", IpLiteral),
            ("https://[::1]/x", IpLiteral),
            ("https://[::ffff:127.0.0.1]/x", IpLiteral),
            ("https://[::ffff:7f00:1]/x", IpLiteral),
            ("https://[fd00::1]/x", IpLiteral),
            ("https://10.1.2.3/", IpLiteral),
            ("https://169.254.169.254/latest/meta-data/", IpLiteral),
            ("https://localhost/x", LocalName),
            ("https://localhost./x", LocalName),
            ("https://LOCALHOST/x", LocalName),
            ("https://push.localhost/x", LocalName),
            ("https://printer.local/x", LocalName),
            ("https://metadata.google.internal/x", LocalName),
            ("https://router.home.arpa/x", LocalName),
            ("https://intranet/x", LocalName),
            ("https://push.example.com:8443/x", Port),
            ("https://push.example.com:80/x", Port),
            ("https://user:pw@push.example.com/x", Credentials),
            ("not a url", Malformed),
        ] {
            assert_eq!(check_endpoint(url).err(), Some(why), "{url}");
        }
        let long = format!("https://push.example.com/{}", "a".repeat(MAX_ENDPOINT_LEN));
        assert_eq!(check_endpoint(&long).err(), Some(Malformed));
    }

    #[test]
    fn addresses() {
        for blocked in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::7f00:1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "2002:7f00:1::",
        ] {
            assert!(!is_public(blocked.parse().unwrap()), "{blocked}");
        }
        for public in [
            "8.8.8.8",
            "142.250.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2607:f8b0::1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn the_resolver_drops_private_answers() {
        let table = HashMap::from([
            (
                "mixed.example".to_owned(),
                vec!["127.0.0.1:0".parse().unwrap(), "8.8.8.8:0".parse().unwrap()],
            ),
            (
                "inside.example".to_owned(),
                vec!["10.0.0.1:0".parse().unwrap()],
            ),
        ]);
        let r = GuardedResolver::new(Arc::new(StaticLookup(table)), false);
        let got: Vec<SocketAddr> = r
            .resolve("mixed.example".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(got, vec!["8.8.8.8:0".parse::<SocketAddr>().unwrap()]);
        assert!(r.resolve("inside.example".parse().unwrap()).await.is_err());
    }
}
