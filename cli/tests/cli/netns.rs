//! A small internet of Linux network namespaces for the reachability tests: created by the
//! test, with documentation (RFC 5737) and private (RFC 1918) ranges only, never routed to the
//! host, and removed by [`Lab`]'s drop, even when the test fails.
//!
//! Needs root, `ip` (iproute2) and `iptables`; `.ci/run` installs what is missing. Elsewhere the
//! tests fail saying what is missing, unless `CAIRN_SKIP_NETNS=1` says to skip them.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::timeout;

use super::STEP;

/// The "namespace" that is this machine's own network.
pub(crate) const HOST: &str = "";

/// Namespaces made by one test, deleted on drop.
pub(crate) struct Lab {
    prefix: String,
    names: Vec<String>,
}

/// Whether this machine can build a lab; `Err` says what is missing. With
/// `CAIRN_SKIP_NETNS=1` a missing piece skips the test (`Ok(false)`) instead.
pub(crate) fn available() -> Result<bool, String> {
    let missing = what_is_missing();
    match missing {
        None => Ok(true),
        Some(m) if std::env::var("CAIRN_SKIP_NETNS").is_ok_and(|v| v == "1") => {
            eprintln!("skipped (CAIRN_SKIP_NETNS=1): {m}");
            Ok(false)
        }
        Some(m) => Err(format!(
            "this test builds networks out of Linux network namespaces and {m}; run it as root with iproute2 and iptables installed (apt-get install iproute2 iptables), or set CAIRN_SKIP_NETNS=1 to skip it"
        )),
    }
}

fn what_is_missing() -> Option<String> {
    if std::env::consts::OS != "linux" {
        return Some("this is not Linux".into());
    }
    let uid = std::process::Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("it is not running as root".into());
    }
    for (tool, arg) in [("ip", "-V"), ("iptables", "--version")] {
        let ok = std::process::Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Runs a command to completion, panicking with its stderr if it fails.
pub(crate) fn sh(args: &[&str]) {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Lab {
    /// A lab whose namespaces are named `<tag><pid>-…`, so that parallel tests and runs never
    /// collide.
    pub(crate) fn new(tag: &str) -> Self {
        Self {
            prefix: format!("{tag}{}", std::process::id()),
            names: Vec::new(),
        }
    }

    /// Creates namespace `name` with its loopback up; returns its full name.
    pub(crate) fn ns(&mut self, name: &str) -> String {
        let full = format!("{}-{name}", self.prefix);
        // A namespace left by a run that was killed before its drop ran.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &full])
            .stderr(Stdio::null())
            .status();
        sh(&["ip", "netns", "add", &full]);
        self.names.push(full.clone());
        sh(&["ip", "-n", &full, "link", "set", "lo", "up"]);
        full
    }

    /// A veth pair: `a_if` in `a` with address `a_addr` (CIDR), `b_if` in `b` with `b_addr`.
    pub(crate) fn link(a: &str, a_if: &str, a_addr: &str, b: &str, b_if: &str, b_addr: &str) {
        sh(&[
            "ip", "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b,
        ]);
        for (ns, i, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", i]);
            sh(&["ip", "-n", ns, "link", "set", i, "up"]);
        }
    }

    /// Routes `ns`'s traffic that has no nearer route through `gateway`.
    pub(crate) fn default_route(ns: &str, gateway: &str) {
        sh(&["ip", "-n", ns, "route", "add", "default", "via", gateway]);
    }

    /// Makes `ns` forward packets between its interfaces.
    pub(crate) fn forward(ns: &str) {
        sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
    }

    /// Makes `ns` a home router: what leaves through `wan` is masqueraded behind the router's
    /// address there, and nothing comes in but answers to what went out (Linux conntrack).
    pub(crate) fn nat(ns: &str, wan: &str, kind: NatKind) {
        Self::forward(ns);
        let mut masquerade = vec![
            "ip",
            "netns",
            "exec",
            ns,
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            wan,
            "-j",
            "MASQUERADE",
        ];
        if kind == NatKind::Symmetric {
            masquerade.push("--random-fully");
        }
        sh(&masquerade);
        // Nothing comes in through `wan` but answers, whether routed on (FORWARD) or for the
        // router itself (INPUT). The router's own firewall drops what nobody asked for, as a
        // home router's does: left to answer it (ICMP port unreachable), the router would keep
        // a conntrack entry for the unsolicited packet for 30 s, and a hole punch from inside
        // to the same peer would be mapped to another port.
        for chain in ["FORWARD", "INPUT"] {
            let rule = [
                "ip", "netns", "exec", ns, "iptables", "-A", chain, "-i", wan,
            ];
            let answers = [
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            ];
            sh(&[&rule[..], &answers[..]].concat());
            sh(&[&rule[..], &["-j", "DROP"][..]].concat());
        }
    }
}

/// How a lab router maps ports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum NatKind {
    /// Linux's default: a flow keeps its source port where it can, so the port a peer saw is
    /// the one a hole punch from another peer arrives at (endpoint-independent mapping).
    PortPreserving,
    /// Every flow gets a random port (`--random-fully`), as carrier-grade and some corporate
    /// NATs do: a hole punch aims at a port that maps to nothing.
    Symmetric,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.names.iter().rev() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// `cairn` run inside namespace `ns`, or on this machine's own network (its 127.0.0.1 only, by
/// the tests' addresses) when `ns` is [`HOST`]; set up as the test helper `cairn()` is, but with
/// mDNS and UPnP left to the arguments.
pub(crate) fn cairn_in(ns: &str) -> Command {
    let mut c = if ns == HOST {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
    } else {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_cairn")]);
        c
    };
    for var in [
        "CAIRN_DATA_DIR",
        "CAIRN_API",
        "CAIRN_TOKEN",
        "RUST_LOG",
        "CAIRN_NO_MDNS",
        "CAIRN_NO_UPNP",
    ] {
        c.env_remove(var);
    }
    c.env("CAIRN_CONFIG", "/dev/null").env("NO_COLOR", "1");
    c.kill_on_drop(true);
    c
}

/// Runs `cairn --data-dir dir args…` in `ns` to completion (bounded); returns its stdout,
/// panicking with its stderr if it fails.
pub(crate) async fn run_in(ns: &str, dir: &Path, args: &[&str]) -> String {
    let mut c = cairn_in(ns);
    c.arg("--data-dir").arg(dir).args(args);
    let o = timeout(STEP, c.output())
        .await
        .unwrap_or_else(|_| panic!("cairn {args:?} in {ns} did not finish in time"))
        .expect("cairn runs");
    assert!(
        o.status.success(),
        "cairn {args:?} in {ns} failed: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// `cairn --json status` of the daemon on `dir` in `ns`.
pub(crate) async fn status_in(ns: &str, dir: &Path) -> serde_json::Value {
    serde_json::from_str(&run_in(ns, dir, &["--json", "status"]).await).expect("status is JSON")
}

/// A daemon in a namespace; killed on drop, its log kept to show when a test fails.
pub(crate) struct NsDaemon {
    child: Child,
    pub(crate) ns: String,
    pub(crate) dir: std::path::PathBuf,
    pub(crate) peer_id: String,
    pub(crate) addrs: Vec<String>,
    log: Arc<Mutex<String>>,
}

impl NsDaemon {
    /// Starts `cairn daemon args…` on `dir` in `ns` and waits (bounded) for its ready event.
    pub(crate) async fn start(ns: &str, dir: &Path, args: &[&str]) -> Self {
        let mut c = cairn_in(ns);
        c.env(
            "RUST_LOG",
            "info,cairn_node=debug,libp2p_dcutr=debug,libp2p_relay=debug",
        )
        .arg("--json")
        .arg("--data-dir")
        .arg(dir)
        .args(["daemon", "--api", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn cairn daemon");
        let log = super::collect_stderr(&mut child);
        let ready = super::ready_event(&mut child).await;
        let Some(ready) = ready else {
            panic!(
                "the daemon in {ns} never got ready: {}",
                log.lock().unwrap()
            );
        };
        Self {
            child,
            ns: ns.to_owned(),
            dir: dir.to_owned(),
            peer_id: ready["peer_id"].as_str().unwrap().to_owned(),
            addrs: ready["addrs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect(),
            log,
        }
    }

    /// Stops it with SIGTERM and waits (bounded) for a clean exit.
    pub(crate) async fn stop(self) {
        super::terminate(self.child).await;
    }

    /// Everything it logged so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The lines of its log that contain one of `needles`.
    pub(crate) fn log_lines(&self, needles: &[&str]) -> String {
        self.log
            .lock()
            .unwrap()
            .lines()
            .filter(|l| needles.iter().any(|n| l.contains(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Its status, polled (every 250 ms, at most `within`) until `done` holds; the last status
    /// either way.
    pub(crate) async fn status_until(
        &self,
        within: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> (bool, serde_json::Value) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let s = status_in(&self.ns, &self.dir).await;
            if done(&s) {
                return (true, s);
            }
            if tokio::time::Instant::now() >= deadline {
                return (false, s);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
