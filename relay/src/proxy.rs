//! Behind a reverse proxy (X8): request logs through `tower_http`'s `TraceLayer`,
//! with the client's address taken from `X-Forwarded-For` only when the request
//! comes from a configured proxy (anyone else could write that header).
//!
//! Nothing else reads `X-Forwarded-*`: webhook signatures are checked over the
//! configured `public_url` (the URL the provider signs), cookies follow its scheme,
//! and limits are keyed by seller, not address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnRequest, DefaultOnResponse, MakeSpan, TraceLayer};
use tracing::Level;

/// The client's address: the peer's, or — when the peer is a trusted proxy — the
/// last address in `X-Forwarded-For` that is not a trusted proxy itself.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
}

/// Names each request's span: method, path (no query), client address.
#[derive(Clone)]
pub struct RequestSpan {
    trusted: Arc<Vec<IpAddr>>,
}

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &Request<B>) -> tracing::Span {
        let client = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| client_addr(c.0.ip(), req.headers(), &self.trusted).to_string())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            %client,
        )
    }
}

/// The request log: a span per request, and a line per response (status, latency).
/// Headers (cookies, tokens) are never recorded.
pub fn trace_layer(
    trusted: Arc<Vec<IpAddr>>,
) -> TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    RequestSpan,
    DefaultOnRequest,
    DefaultOnResponse,
> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan { trusted })
        .on_response(DefaultOnResponse::new().level(Level::INFO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4, 5.6.7.8".parse().unwrap());
        assert_eq!(
            client_addr(proxy, &h, &[proxy]),
            "5.6.7.8".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_addr(other, &h, &[proxy]),
            other,
            "a forged header is ignored"
        );
        assert_eq!(client_addr(proxy, &h, &[]), proxy, "no proxy configured");
        assert_eq!(client_addr(proxy, &HeaderMap::new(), &[proxy]), proxy);
    }
}
