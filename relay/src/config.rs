//! Configuration: a TOML file, overridden by environment variables and CLI flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use crate::model::Directory;
use crate::provider::TwilioConfig;

/// Command-line flags (each also read from the environment).
#[derive(Debug, Parser)]
#[command(
    name = "sms-relay",
    about = "SMS provider callbacks in, Server-Sent Events out, outbound sends"
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, env = "RELAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "RELAY_BIND")]
    pub bind: Option<SocketAddr>,
    /// SQLite database file.
    #[arg(long, env = "RELAY_DATABASE")]
    pub database: Option<PathBuf>,
    /// The URL the provider calls (signatures cover it), e.g. https://relay.example.com.
    #[arg(long, env = "RELAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Run the built-in simulated provider and customer phone.
    #[arg(long, env = "RELAY_DEMO")]
    pub demo: bool,
    /// Directory of static files to serve (the demo page).
    #[arg(long, env = "RELAY_WWW")]
    pub www: Option<PathBuf>,
    /// Empty the event log and start a new epoch before serving.
    #[arg(long)]
    pub reset_log: bool,
}

/// A seller's credentials (the token is exchanged for a session cookie).
#[derive(Clone, Debug, Deserialize)]
pub struct SellerToken {
    /// Seller id.
    pub id: String,
    /// Long-lived secret; never put it in a URL.
    pub token: String,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_database() -> PathBuf {
    PathBuf::from("relay.db")
}

fn default_session_hours() -> u64 {
    12
}

fn default_max_body() -> usize {
    64 * 1024
}

/// The relay's configuration.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// Address to listen on (default 127.0.0.1:8080).
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// The public base URL (default `http://<bind>`).
    #[serde(default)]
    pub public_url: Option<String>,
    /// SQLite database file.
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// Region for national numbers (ISO 3166 alpha-2).
    #[serde(default)]
    pub default_region: Option<String>,
    /// Simulated provider and customer phone (demo and tests).
    #[serde(default)]
    pub demo: bool,
    /// Static files to serve.
    #[serde(default)]
    pub www: Option<PathBuf>,
    /// Token for CRM integration calls (`PUT`/`PATCH /directory`, `POST /admin/reset`).
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Twilio-compatible provider; in demo mode it defaults to the built-in fake.
    #[serde(default)]
    pub provider: Option<TwilioConfig>,
    /// Sellers' tokens.
    #[serde(default)]
    pub sellers: Vec<SellerToken>,
    /// JSON file with the directory to seed an empty log with.
    #[serde(default)]
    pub directory: Option<PathBuf>,
    /// VAPID private key (base64url, 32 bytes); generated and kept in the database when absent.
    #[serde(default)]
    pub vapid_private_key: Option<String>,
    /// VAPID contact (`mailto:` or `https:` URL).
    #[serde(default)]
    pub vapid_subject: Option<String>,
    /// Session lifetime in hours.
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            public_url: None,
            database: default_database(),
            default_region: None,
            demo: false,
            www: None,
            admin_token: None,
            provider: None,
            sellers: Vec::new(),
            directory: None,
            vapid_private_key: None,
            vapid_subject: None,
            session_hours: default_session_hours(),
            max_body_bytes: default_max_body(),
        }
    }
}

impl Config {
    /// Reads the file named by the CLI (if any), then applies env and flags.
    pub fn load(cli: &Cli) -> Result<Self, String> {
        let mut config = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let mut c: Self =
                    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                c.resolve_paths(path.parent().unwrap_or(Path::new(".")));
                c
            }
            None => Self::default(),
        };
        if let Some(b) = cli.bind {
            config.bind = b;
        }
        if let Some(d) = &cli.database {
            config.database = d.clone();
        }
        if let Some(u) = &cli.public_url {
            config.public_url = Some(u.clone());
        }
        if cli.demo {
            config.demo = true;
        }
        if let Some(w) = &cli.www {
            config.www = Some(w.clone());
        }
        if let Ok(token) = std::env::var("RELAY_AUTH_TOKEN") {
            if let Some(p) = config.provider.as_mut() {
                p.auth_token = token;
            }
        }
        if let Ok(token) = std::env::var("RELAY_ADMIN_TOKEN") {
            config.admin_token = Some(token);
        }
        if config.provider.is_none() && !config.demo {
            return Err("no [provider] configured (or run with --demo)".into());
        }
        Ok(config)
    }

    /// Paths in a config file are relative to the file.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.database);
        if let Some(d) = self.directory.as_mut() {
            fix(d);
        }
        if let Some(w) = self.www.as_mut() {
            fix(w);
        }
    }

    /// The public base URL, without a trailing slash.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The directory to seed an empty log with.
    pub fn seed_directory(&self) -> Result<Directory, String> {
        match &self.directory {
            None => Ok(Directory::default()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }
}
