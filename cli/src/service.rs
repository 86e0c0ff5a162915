//! `cairn service install|uninstall|status`: the daemon as a service of the user, started at
//! login and restarted if it fails: a systemd user unit on Linux (logs in the journal:
//! `journalctl --user -u cairn`), a launchd agent on macOS (logs in `~/Library/Logs/cairn/`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::output::Output;

/// systemd's unit name and launchd's label.
const UNIT: &str = "cairn.service";
const LABEL: &str = "org.cairn.daemon";

#[derive(clap::Subcommand, Debug)]
pub(crate) enum ServiceCommand {
    /// Write the service file and start the daemon now and at every login
    #[command(after_long_help = "Example:\n  cairn service install && cairn service status")]
    Install {
        #[command(flatten)]
        opts: ServiceOpts,
        /// Write the service file only: do not ask systemd or launchd to start it
        #[arg(long)]
        no_start: bool,
        /// Extra arguments for `cairn daemon`, e.g. --daemon-args="--relay-server on"
        #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
        daemon_args: Option<String>,
    },
    /// Stop the service and remove its file
    Uninstall {
        #[command(flatten)]
        opts: ServiceOpts,
    },
    /// Say whether the service is installed and running, and where its logs are
    Status {
        #[command(flatten)]
        opts: ServiceOpts,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct ServiceOpts {
    /// Where the service file goes [default: ~/.config/systemd/user on Linux,
    /// ~/Library/LaunchAgents on macOS]
    #[arg(long, value_name = "DIR")]
    unit_dir: Option<PathBuf>,
}

/// What the service runs: `cairn` on this data directory (and config file, if one was named).
pub(crate) struct Paths {
    pub(crate) data_dir: PathBuf,
    pub(crate) config: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Systemd,
    Launchd,
}

impl Kind {
    fn here() -> anyhow::Result<Self> {
        match std::env::consts::OS {
            "linux" => Ok(Self::Systemd),
            "macos" => Ok(Self::Launchd),
            os => anyhow::bail!(
                "no service support on {os}: run `cairn daemon` from your system's service manager"
            ),
        }
    }

    fn default_dir(self) -> anyhow::Result<PathBuf> {
        let home = directories::BaseDirs::new()
            .context("no home directory: pass --unit-dir")?
            .home_dir()
            .to_owned();
        Ok(match self {
            Self::Systemd => home.join(".config/systemd/user"),
            Self::Launchd => home.join("Library/LaunchAgents"),
        })
    }

    fn file_name(self) -> String {
        match self {
            Self::Systemd => UNIT.to_owned(),
            Self::Launchd => format!("{LABEL}.plist"),
        }
    }

    fn logs(self) -> String {
        match self {
            Self::Systemd => "journalctl --user -u cairn -f".to_owned(),
            Self::Launchd => "~/Library/Logs/cairn/daemon.log".to_owned(),
        }
    }
}

/// The daemon's command line, one argument each.
fn daemon_command(paths: &Paths, extra: Option<&str>) -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("cannot find the path of this cairn binary")?;
    let mut args = vec![
        exe.display().to_string(),
        "--data-dir".into(),
        absolute(&paths.data_dir)?.display().to_string(),
    ];
    if let Some(c) = &paths.config {
        args.extend(["--config".into(), absolute(c)?.display().to_string()]);
    }
    args.push("daemon".into());
    args.extend(
        extra
            .into_iter()
            .flat_map(|e| e.split_whitespace().map(str::to_owned)),
    );
    Ok(args)
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
}

/// A systemd user unit for `args`.
fn systemd_unit(args: &[String]) -> String {
    let quoted: Vec<String> = args.iter().map(|a| systemd_quote(a)).collect();
    format!(
        "# Written by `cairn service install`; `cairn service uninstall` removes it.\n\
         [Unit]\n\
         Description=cairn peer-to-peer content store\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         # SIGTERM: the daemon says goodbye to its peers and closes its store.\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=30\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        quoted.join(" ")
    )
}

/// Quotes one ExecStart argument (systemd.syntax(7)): in double quotes, with `\`, `"`, `$`
/// and `%` escaped.
fn systemd_quote(a: &str) -> String {
    let mut out = String::from("\"");
    for c in a.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A launchd agent for `args`.
fn launchd_plist(args: &[String], log: &Path) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let args: String = args
        .iter()
        .map(|a| format!("    <string>{}</string>\n", esc(a)))
        .collect();
    let log = esc(&log.display().to_string());
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n\
         \x20 <key>Label</key>\n  <string>{LABEL}</string>\n\
         \x20 <key>ProgramArguments</key>\n  <array>\n{args}  </array>\n\
         \x20 <key>RunAtLoad</key>\n  <true/>\n\
         \x20 <key>KeepAlive</key>\n  <dict><key>SuccessfulExit</key><false/></dict>\n\
         \x20 <key>StandardOutPath</key>\n  <string>{log}</string>\n\
         \x20 <key>StandardErrorPath</key>\n  <string>{log}</string>\n\
         </dict>\n</plist>\n"
    )
}

/// Runs a service manager command; its failure is an error naming the command.
fn manager(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| {
        format!("cannot run {program}; is it installed? (the service file is written: start it by hand, or run `cairn daemon`)")
    })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        anyhow::bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            err.lines().next().unwrap_or("no message").trim()
        );
    }
    Ok(text)
}

fn uid() -> String {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "501".into())
}

pub(crate) fn run(paths: &Paths, command: ServiceCommand, out: &Output) -> anyhow::Result<()> {
    let kind = Kind::here()?;
    let dir_of = |opts: &ServiceOpts| match &opts.unit_dir {
        Some(d) => Ok(d.clone()),
        None => kind.default_dir(),
    };
    match command {
        ServiceCommand::Install {
            opts,
            no_start,
            daemon_args,
        } => {
            let dir = dir_of(&opts)?;
            let file = dir.join(kind.file_name());
            let args = daemon_command(paths, daemon_args.as_deref())?;
            let text = match kind {
                Kind::Systemd => systemd_unit(&args),
                Kind::Launchd => {
                    let logs = directories::BaseDirs::new()
                        .context("no home directory")?
                        .home_dir()
                        .join("Library/Logs/cairn");
                    std::fs::create_dir_all(&logs)
                        .with_context(|| format!("cannot create {}", logs.display()))?;
                    launchd_plist(&args, &logs.join("daemon.log"))
                }
            };
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::write(&file, text)
                .with_context(|| format!("cannot write {}", file.display()))?;
            let started = if no_start {
                false
            } else {
                match kind {
                    Kind::Systemd => {
                        manager("systemctl", &["--user", "daemon-reload"])?;
                        manager("systemctl", &["--user", "enable", "--now", UNIT])?;
                    }
                    Kind::Launchd => {
                        let target = format!("gui/{}", uid());
                        let f = file.display().to_string();
                        manager("launchctl", &["bootstrap", &target, &f])?;
                    }
                }
                true
            };
            let text = format!(
                "wrote {}\n{}\nlogs: {}",
                file.display(),
                if started {
                    "the daemon runs now and at every login"
                } else {
                    "not started (--no-start)"
                },
                kind.logs()
            );
            out.print(
                text,
                serde_json::json!({
                    "file": file, "started": started, "command": args, "logs": kind.logs(),
                }),
            );
        }
        ServiceCommand::Uninstall { opts } => {
            let file = dir_of(&opts)?.join(kind.file_name());
            if !file.exists() {
                anyhow::bail!(
                    "no cairn service is installed ({} does not exist)",
                    file.display()
                );
            }
            // Stopping may fail when the manager is not running (a container); the file goes
            // anyway.
            let stopped = match kind {
                Kind::Systemd => manager("systemctl", &["--user", "disable", "--now", UNIT]),
                Kind::Launchd => {
                    manager("launchctl", &["bootout", &format!("gui/{}/{LABEL}", uid())])
                }
            };
            std::fs::remove_file(&file)
                .with_context(|| format!("cannot remove {}", file.display()))?;
            if kind == Kind::Systemd {
                let _ = manager("systemctl", &["--user", "daemon-reload"]);
            }
            let note = match &stopped {
                Ok(_) => "stopped and removed".to_owned(),
                Err(e) => format!("removed (stopping it failed: {e})"),
            };
            out.print(
                format!("{note}: {}", file.display()),
                serde_json::json!({ "file": file, "stopped": stopped.is_ok() }),
            );
        }
        ServiceCommand::Status { opts } => {
            let file = dir_of(&opts)?.join(kind.file_name());
            let installed = file.exists();
            let state = match kind {
                Kind::Systemd if installed => Command::new("systemctl")
                    .args(["--user", "is-active", UNIT])
                    .output()
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "unknown (systemctl did not answer)".into()),
                Kind::Launchd if installed => {
                    match manager("launchctl", &["print", &format!("gui/{}/{LABEL}", uid())]) {
                        Ok(_) => "loaded".into(),
                        Err(_) => "not loaded".into(),
                    }
                }
                _ => "not installed".into(),
            };
            let text = if installed {
                format!(
                    "installed: {}\nstate: {state}\nlogs: {}",
                    file.display(),
                    kind.logs()
                )
            } else {
                format!(
                    "not installed (no {}); `cairn service install` installs it",
                    file.display()
                )
            };
            out.print(
                text,
                serde_json::json!({
                    "installed": installed, "file": file, "state": state, "logs": kind.logs(),
                }),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_quotes_what_systemd_would_expand() {
        let unit = systemd_unit(&["/opt/my cairn/cairn".into(), "100%$HOME".into()]);
        assert!(unit.contains("ExecStart=\"/opt/my cairn/cairn\" \"100%%$$HOME\"\n"));
        assert!(unit.contains("WantedBy=default.target"));
    }

    #[test]
    fn a_plist_escapes_xml() {
        let p = launchd_plist(&["a<b&c".into()], Path::new("/l/d.log"));
        assert!(p.contains("<string>a&lt;b&amp;c</string>"));
        assert!(p.contains("<string>/l/d.log</string>"));
    }
}
