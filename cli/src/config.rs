//! Where settings come from: flags override environment variables (both handled by clap),
//! which override the optional TOML config file, which overrides the defaults.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::Cli;

/// The config file's contents; every key optional.
///
/// ```toml
/// data_dir = "/srv/cairn"
/// api = "127.0.0.1:5737"
/// listen = ["/ip4/0.0.0.0/udp/5738/quic-v1", "/ip4/0.0.0.0/tcp/5738"]
/// bootstrap = ["/ip4/192.0.2.7/udp/5738/quic-v1/p2p/12D3KooW…", "/dnsaddr/boot.example.org/p2p/12D3KooW…"]
/// join = ["cairninvite1…"]    # invites to join through at start
/// quota = "50GiB"          # or a number of bytes
/// replication = 5
/// network = "lab"          # a private network's name [default: the public one]
/// relay_server = "auto"    # auto (while publicly reachable), on, off
/// mdns = true              # find peers on the local network
/// upnp = true              # map the port on the router
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) api: Option<String>,
    #[serde(default)]
    pub(crate) listen: Vec<String>,
    #[serde(default)]
    pub(crate) bootstrap: Vec<String>,
    #[serde(default)]
    pub(crate) join: Vec<String>,
    pub(crate) quota: Option<toml::Value>,
    pub(crate) replication: Option<usize>,
    pub(crate) network: Option<String>,
    pub(crate) relay_server: Option<String>,
    pub(crate) mdns: Option<bool>,
    pub(crate) upnp: Option<bool>,
}

/// Settings after every source is applied.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) data_dir: PathBuf,
    /// An explicit API address (flag, env or config), if any.
    pub(crate) api: Option<String>,
    /// The config file named on the command line or in the environment, if any.
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) file: ConfigFile,
}

impl Settings {
    pub(crate) fn resolve(cli: &Cli) -> anyhow::Result<Self> {
        let dirs = directories::ProjectDirs::from("", "", "cairn");
        let (path, explicit) = match &cli.config {
            Some(p) => (Some(p.clone()), true),
            None => (
                dirs.as_ref().map(|d| d.config_dir().join("config.toml")),
                false,
            ),
        };
        let file = match path {
            Some(p) if explicit || p.exists() => read_config(&p)?,
            _ => ConfigFile::default(),
        };
        let data_dir = cli
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .or_else(|| dirs.map(|d| d.data_dir().to_owned()))
            .context("no data directory: pass --data-dir or set CAIRN_DATA_DIR")?;
        let api = cli.api.clone().or_else(|| file.api.clone());
        Ok(Self {
            data_dir,
            api,
            config_path: cli.config.clone().filter(|p| p != Path::new("/dev/null")),
            file,
        })
    }
}

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is invalid", path.display()))
}

/// Parses a size such as `1048576`, `512MiB`, `10GB`, `2G`.
pub(crate) fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .with_context(|| format!("'{text}' is not a size like 10GiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => anyhow::bail!("'{text}' has an unknown unit; use B, KiB, MiB, GiB or TiB"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("512 MB").unwrap(), 512 << 20);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn config_file_keys() {
        let c: ConfigFile = toml::from_str(
            "data_dir = \"/x\"\nquota = \"1GiB\"\nbootstrap = [\"/ip4/1.2.3.4/tcp/1\"]",
        )
        .unwrap();
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("/x")));
        assert!(toml::from_str::<ConfigFile>("nonsense = 1").is_err());
    }
}
