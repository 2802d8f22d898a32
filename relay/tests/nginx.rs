//! The reverse-proxy example (`relay/deploy/nginx.conf`) really run (X8): Debian's
//! nginx, started with its own configuration in a temporary folder, in front of a
//! relay on 127.0.0.1. Plain HTTP on loopback: the example's TLS lines are taken out
//! and its addresses pointed at this test's ports; everything else is the file as
//! shipped. `make test` installs nginx (the tools step), so CI never skips this.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Relay, SseClient, AUTH_TOKEN};
use sms_relay::signature::sign;

const ASHA_ORG: &str = "+14155550100";

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shipped example, for `listen` on 127.0.0.1:`port` over plain HTTP and the
/// relay at `upstream`. Each replaced line must be there: the test breaks if the
/// example drifts.
fn example_for_test(port: u16, upstream: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf");
    let mut text = std::fs::read_to_string(path).unwrap();
    let replacements = [
        (
            "    server 127.0.0.1:8080;",
            format!("    server {upstream};"),
        ),
        (
            "    listen 443 ssl http2;\n",
            format!("    listen 127.0.0.1:{port};\n"),
        ),
        ("    listen [::]:443 ssl http2;\n", String::new()),
        (
            "    ssl_certificate     /etc/letsencrypt/live/sms.example.com/fullchain.pem;\n",
            String::new(),
        ),
        (
            "    ssl_certificate_key /etc/letsencrypt/live/sms.example.com/privkey.pem;\n",
            String::new(),
        ),
        (
            "    listen 80;\n",
            format!("    listen 127.0.0.1:{};\n", free_port()),
        ),
        ("    listen [::]:80;\n", String::new()),
    ];
    for (from, to) in replacements {
        assert!(text.contains(from), "the example no longer has {from:?}");
        text = text.replacen(from, &to, 1);
    }
    text
}

struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(bin: &Path, port: u16, upstream: &str) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    std::fs::write(tmp.join("relay.conf"), example_for_test(port, upstream)).unwrap();
    // nginx started as root runs its workers as `user`; as anyone else it ignores it.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    let t = tmp.display();
    let main = format!(
        "{user}daemon off;\nworker_processes 1;\npid {t}/nginx.pid;\nerror_log {t}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log {t}/access.log;\n  client_body_temp_path {t}/body;\n  \
         proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  \
         scgi_temp_path {t}/scgi;\n  include {t}/relay.conf;\n}}\n"
    );
    std::fs::write(tmp.join("nginx.conf"), main).unwrap();
    let check = Command::new(bin)
        .arg("-p")
        .arg(tmp)
        .arg("-c")
        .arg(tmp.join("nginx.conf"))
        .arg("-t")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new(bin)
        .arg("-p")
        .arg(tmp)
        .arg("-c")
        .arg(tmp.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Nginx { child, _dir: dir }
}

async fn wait_until_up(url: &str) {
    for _ in 0..100 {
        if reqwest::get(format!("{url}/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nginx never answered on {url}");
}

async fn post_signed(url: &str, signed_over: &str, params: &[(String, String)]) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("X-Twilio-Signature", sign(AUTH_TOKEN, signed_over, params))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(params).unwrap())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn signed_webhooks_and_unbuffered_events_through_nginx() {
    let Some(bin) = nginx_binary() else {
        eprintln!("SKIPPED: nginx is not installed (make test installs it: apt-get install nginx)");
        return;
    };
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let relay = Relay::start_demo(|c| {
        c.public_url = Some(public.clone());
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let upstream = relay.url.trim_start_matches("http://").to_owned();
    let _nginx = start_nginx(&bin, port, &upstream);
    wait_until_up(&public).await;

    // An event stream through the proxy.
    let mut sse = SseClient::connect(&public, "asha", None).await;
    sse.drain(Duration::from_millis(300)).await;

    // The provider signs the public URL (what nginx presents); the relay checks it
    // over that URL, not over the address nginx proxies to.
    let params: Vec<(String, String)> = [
        ("MessageSid", "SMnginx1"),
        ("AccountSid", "ACdemo"),
        ("From", "+919812345678"),
        ("To", ASHA_ORG),
        ("Body", "through the proxy"),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let hook = format!("{public}/webhooks/twilio/inbound");
    let internal = format!("{}/webhooks/twilio/inbound", relay.url);
    assert_eq!(post_signed(&hook, &internal, &params).await, 403);
    assert_eq!(post_signed(&hook, &hook, &params).await, 200);

    // The event comes through at once: nginx does not hold it in a buffer.
    let event = sse
        .next(Duration::from_secs(10))
        .await
        .expect("the event through nginx");
    assert_eq!(event.data["kind"], "inbound");
    assert_eq!(event.data["body"], "through the proxy");

    // The example keeps /metrics inside; webhook-sized bodies only outside /directory.
    let r = reqwest::get(format!("{public}/metrics")).await.unwrap();
    assert_eq!(r.status(), 404);
    let big = vec![("Body".to_owned(), "x".repeat(100 * 1024))];
    assert_eq!(post_signed(&hook, &hook, &big).await, 413);
}

#[test]
fn the_production_example_config_parses_and_passes_its_checks() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/relay.prod.toml");
    let mut config: sms_relay::config::Config =
        toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(config.limits.streams_per_seller, 8);
    assert_eq!(config.trusted_proxies.len(), 2);
    assert_eq!(
        (config.checkpoint_every_secs, config.idempotency_days),
        (300, 30)
    );
    assert_eq!(config.retention_days, None);
    let provider = config.provider.as_mut().unwrap();
    assert_eq!(provider.messaging_services.len(), 1);
    // The unit hands the secrets over as files; here, values of the right strength.
    provider.auth_token = "twilio-auth-8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f".into();
    provider.api_key_secret = Some("twilio-key-8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f".into());
    config.auth.secret = Some("jwt-hs256-5f4e3d2c1b0a9f8e7d6c5b4a39281706".into());
    config.admin_token = Some("prod-admin-3b1f9c2e7d4a5b6c8e9f0a1b2c3d4e5f".into());
    assert_eq!(config.check(), Ok(()));
}
