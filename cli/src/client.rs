//! The command line's side of the daemon's API: it parses what the user typed, calls
//! [`cairn_node::api::Client`] (which does the walking, uploading and downloading), and prints
//! the answer for people or, under `--json`, one JSON object per result.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use cairn_node::api::{self, GcBody, ListingItem};
use cairn_node::fsutil::{OutputTarget, output_target};
use cairn_node::{ContentId, ContentPath, KeyName, Progress, ProgressFn};
use futures::StreamExt;
use indicatif::{HumanBytes, ProgressBar};
use tokio::io::AsyncWriteExt;

use crate::config::Settings;
use crate::output::Output;

/// A daemon's API, and how to print its answers.
pub(crate) struct Client {
    api: api::Client,
}

impl Client {
    /// Finds the daemon: `--api`/`CAIRN_API` if given (token from `CAIRN_TOKEN` or the data
    /// directory), else the address and token the daemon wrote into the data directory.
    pub(crate) fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let token_env = std::env::var("CAIRN_TOKEN").ok();
        let api = match &settings.api {
            Some(addr) => {
                let token = match token_env {
                    Some(t) => t,
                    None => match api::Client::from_data_dir(&settings.data_dir) {
                        Ok(c) => c.token().to_owned(),
                        Err(_) => bail!(
                            "no API token for {addr}: set CAIRN_TOKEN, or pass the daemon's --data-dir"
                        ),
                    },
                };
                api::Client::new(addr, token)?
            }
            None => {
                let client = api::Client::from_data_dir(&settings.data_dir)?;
                match token_env {
                    Some(t) => client.with_token(t),
                    None => client,
                }
            }
        };
        Ok(Self { api })
    }

    pub(crate) async fn put(&self, path: &Path, out: &Output) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let reply = if path == Path::new("-") {
            let bar = out.bar(None, "put");
            let body = tokio_util::io::ReaderStream::new(tokio::io::stdin());
            let reply = self.api.put_stream(body, follow(&bar)).await?;
            bar.finish_and_clear();
            reply
        } else {
            // The bar's length for now: the client tells the tree's once it has walked it, and
            // a pipe or /proc file (length 0) is read to its end.
            let hint = std::fs::metadata(path).ok().and_then(|m| {
                if m.is_dir() {
                    Some(0)
                } else {
                    (m.len() > 0).then_some(m.len())
                }
            });
            let bar = out.bar(hint, "put");
            let reply = self.api.put_path(path, follow(&bar)).await?;
            bar.finish_and_clear();
            reply
        };
        out.summary(
            "put",
            reply.size,
            started,
            Some(format!(
                "{} {} placed on other peers",
                reply.replicas,
                if reply.replicas == 1 {
                    "copy"
                } else {
                    "copies"
                }
            )),
        );
        if reply.replicas == 0 && !out.json {
            eprintln!(
                "warning: stored on this node only; no other peer took a copy (is the daemon connected to a network?)"
            );
        }
        out.print(&reply.id, serde_json::to_value(&reply)?);
        Ok(())
    }

    /// Gets what `target` (`ID[/path]` or `NAME[/path]`) leads to, to `output` (default: the
    /// path's last segment, else the id or name, in the current directory), refusing to replace
    /// an existing file unless `force`. A file or a directory tree appears whole or not at all;
    /// a device or FIFO is written to in place; a symbolic link is followed.
    pub(crate) async fn get(
        &self,
        target: &str,
        output: Option<PathBuf>,
        force: bool,
        out: &Output,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let target: ContentPath = target.parse()?;
        let id = self.api.resolve_path(&target).await?;
        if output.as_deref() == Some(Path::new("-")) {
            if self.api.ls(id).await?.kind == "dir" {
                bail!(
                    "{target} is a directory; it cannot be written to standard output (give -o DIR, or `cairn ls` it)"
                );
            }
            return self.write_stdout(id).await;
        }
        let dest = output.unwrap_or_else(|| {
            // Entry names are checked when a directory is written; a path's last segment is
            // one of them.
            match target.file_name() {
                Some(name) if cairn_node::manifest::valid_name(name) => PathBuf::from(name),
                _ => PathBuf::from(target.root.to_string()),
            }
        });
        if let OutputTarget::Create(path) = output_target(&dest)?
            && !force
            && std::fs::symlink_metadata(&path).is_ok()
        {
            bail!(
                "{} already exists; pass --force to replace it, or choose another path with -o",
                path.display()
            );
        }
        // The client tells the length once it has listed the content.
        let bar = out.bar(Some(0), "get");
        let got = self.api.get_to_path(id, &dest, follow(&bar)).await?;
        bar.finish_and_clear();
        out.summary("got", got.size, started, None);
        out.print(
            format!("{}", dest.display()),
            serde_json::json!({
                "target": target.to_string(),
                "id": id.to_string(),
                "path": dest,
                "size": got.size,
            }),
        );
        Ok(())
    }

    pub(crate) async fn cat(&self, target: &str) -> anyhow::Result<()> {
        let id = self.api.resolve_path(&target.parse()?).await?;
        self.write_stdout(id).await
    }

    /// Writes a file's bytes to standard output.
    async fn write_stdout(&self, id: ContentId) -> anyhow::Result<()> {
        let mut bytes = std::pin::pin!(self.api.get_stream(id).await?);
        let mut stdout = tokio::io::stdout();
        while let Some(piece) = bytes.next().await {
            if let Err(e) = stdout.write_all(&piece?).await {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(()); // `cairn cat ID | head` is fine
                }
                return Err(e.into());
            }
        }
        stdout.flush().await?;
        Ok(())
    }

    pub(crate) async fn pin(&self, id: &str, add: bool, out: &Output) -> anyhow::Result<()> {
        let id = parse_id(id)?;
        let reply = self.api.pin(id, add).await?;
        let text = match (add, reply.changed) {
            (true, true) => format!("pinned {id}"),
            (true, false) => format!("{id} was already pinned"),
            (false, true) => format!("unpinned {id}"),
            (false, false) => format!("{id} was not pinned"),
        };
        out.print(text, serde_json::to_value(&reply)?);
        Ok(())
    }

    /// Lists pinned content: a line (or a JSON object) each.
    pub(crate) async fn pins(&self, out: &Output) -> anyhow::Result<()> {
        let pins = self.api.pins().await?;
        if pins.is_empty() && !out.json {
            println!("no pinned content (`cairn pin add ID` pins some)");
        }
        for id in pins {
            out.print(&id, serde_json::json!({ "id": id }));
        }
        Ok(())
    }

    /// Lists a directory (`cairn ls ID[/path]`): name, size and id of each entry, a directory's
    /// name ending in `/`; a file is listed as itself.
    pub(crate) async fn list(&self, target: &str, out: &Output) -> anyhow::Result<()> {
        let target: ContentPath = target.parse()?;
        let id = self.api.resolve_path(&target).await?;
        let listing = self.api.ls(id).await?;
        let entries = if listing.kind == "dir" {
            listing.entries
        } else {
            vec![ListingItem {
                name: target
                    .file_name()
                    .map_or_else(|| id.to_string(), str::to_owned),
                kind: listing.kind,
                id: id.to_string(),
                size: listing.size,
            }]
        };
        if entries.is_empty() && !out.json {
            println!("{target} is an empty directory");
        }
        let width = entries
            .iter()
            .map(|e| e.name.chars().count() + usize::from(e.kind == "dir"))
            .max()
            .unwrap_or(0);
        for e in entries {
            let name = format!(
                "{}{}",
                cairn_node::printable(&e.name),
                if e.kind == "dir" { "/" } else { "" }
            );
            out.print(
                format!(
                    "{name:width$}  {:>10}  {}",
                    HumanBytes(e.size).to_string(),
                    e.id
                ),
                serde_json::to_value(&e)?,
            );
        }
        Ok(())
    }

    /// Opens the web UI in a browser, or prints its address (`cairn ui`). The token rides in
    /// the URL's fragment, which the browser never sends to a server; the page keeps it for
    /// its API calls.
    pub(crate) async fn ui(&self, print: bool, out: &Output) -> anyhow::Result<()> {
        // Reaching the API first: a dead daemon is an error, not a page that does not load.
        self.api.status().await?;
        let origin = self.api.origin();
        let url = format!("{origin}/ui/#token={}", self.api.token());
        if !print && !out.json {
            let opener = if cfg!(target_os = "macos") {
                "open"
            } else {
                "xdg-open"
            };
            let opened = std::process::Command::new(opener)
                .arg(&url)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if opened {
                println!("opened the web UI at {origin}/ui/");
                return Ok(());
            }
            eprintln!("could not start a browser ({opener}); open this address:");
        }
        out.print(&url, serde_json::json!({ "url": url }));
        Ok(())
    }

    /// Publishes the name of key `key` pointing at `id`, and prints the name.
    pub(crate) async fn publish(
        &self,
        id: &str,
        key: &str,
        ttl: Duration,
        out: &Output,
    ) -> anyhow::Result<()> {
        let id = parse_id(id)?;
        let key: KeyName = key.parse()?;
        let reply = self.api.publish(id, Some(&key), ttl).await?;
        if reply.stored == 0 && !out.json {
            eprintln!(
                "warning: the name is on this node only; no other peer took the record (is the daemon connected to a network?)"
            );
        }
        out.print(&reply.name, serde_json::to_value(&reply)?);
        Ok(())
    }

    pub(crate) async fn resolve(&self, name: &str, out: &Output) -> anyhow::Result<()> {
        let reply = self.api.resolve_name(&name.parse()?).await?;
        out.print(&reply.id, serde_json::to_value(&reply)?);
        Ok(())
    }

    /// Creates key `name` and prints its name.
    pub(crate) async fn generate_key(&self, name: &str, out: &Output) -> anyhow::Result<()> {
        let reply = self.api.generate_key(&name.parse()?).await?;
        out.print(&reply.name, serde_json::to_value(&reply)?);
        Ok(())
    }

    /// Lists the keys: a line each, or a JSON object each.
    pub(crate) async fn keys(&self, out: &Output) -> anyhow::Result<()> {
        let keys = self.api.keys().await?;
        let width = keys.iter().map(|k| k.key.len()).max().unwrap_or(0);
        for k in &keys {
            out.print(
                format!("{:width$}  {}", k.key, k.name),
                serde_json::to_value(k)?,
            );
        }
        Ok(())
    }

    /// Removes key `name`.
    pub(crate) async fn remove_key(&self, name: &str, out: &Output) -> anyhow::Result<()> {
        let reply = self.api.remove_key(&name.parse()?).await?;
        out.print(
            format!(
                "removed key {} ({}); its name is no longer renewed and lapses when its record expires",
                reply.key, reply.name
            ),
            serde_json::to_value(&reply)?,
        );
        Ok(())
    }

    /// Prints an invite to the daemon (`cairn invite`).
    pub(crate) async fn invite(&self, out: &Output) -> anyhow::Result<()> {
        let reply = self.api.invite().await?;
        out.print(&reply.ticket, serde_json::to_value(&reply)?);
        Ok(())
    }

    /// Joins through the node of `ticket` before a get (`cairn get ID --from TICKET`), saying
    /// nothing unless it fails.
    pub(crate) async fn join_quietly(&self, ticket: &str) -> anyhow::Result<()> {
        self.api.add_peer(ticket).await?;
        Ok(())
    }

    pub(crate) async fn add_peer(&self, addr: &str, out: &Output) -> anyhow::Result<()> {
        let reply = self.api.add_peer(addr).await?;
        let text = format!(
            "joined through {}: {} close peers answered",
            reply.addr, reply.peers
        );
        out.print(text, serde_json::to_value(&reply)?);
        Ok(())
    }

    pub(crate) async fn peers(&self, out: &Output) -> anyhow::Result<()> {
        let peers = self.api.peers().await?;
        if out.json {
            for p in &peers {
                out.print("", serde_json::to_value(p)?);
            }
            return Ok(());
        }
        if peers.is_empty() {
            println!(
                "no peers: this node is on its own; join a network with `cairn peers add TICKET` (a friend's `cairn invite`)"
            );
            return Ok(());
        }
        let rows: Vec<[String; 4]> = peers
            .iter()
            .map(|p| {
                [
                    p.peer_id.clone(),
                    p.addr.clone(),
                    p.rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms")),
                    match (p.connected, p.relayed) {
                        (true, true) => "relayed".into(),
                        (true, false) => "direct".into(),
                        (false, _) => "-".into(),
                    },
                ]
            })
            .collect();
        let header = ["PEER ID", "ADDRESS", "RTT", "CONNECTION"];
        let widths: Vec<usize> = (0..4)
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].len())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: [&str; 4]| {
            format!(
                "{:w0$}  {:w1$}  {:>w2$}  {}",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        };
        println!("{}", line(header));
        for r in &rows {
            println!("{}", line([&r[0], &r[1], &r[2], &r[3]]));
        }
        println!(
            "{} {} in the routing table",
            rows.len(),
            if rows.len() == 1 { "peer" } else { "peers" }
        );
        Ok(())
    }

    pub(crate) async fn status(&self, out: &Output) -> anyhow::Result<()> {
        let s = self.api.status().await?;
        let list = |addrs: &[String]| {
            if addrs.is_empty() {
                "none".to_owned()
            } else {
                addrs.join("\n              ")
            }
        };
        let reach = format!(
            "network:      {}\nreachable:    {} (external: {}; relayed: {}; {} hole punches)\n",
            s.network,
            s.reachability,
            list(&s.external_addrs),
            list(&s.relayed_addrs),
            s.hole_punches,
        );
        let r = &s.repair;
        let text = format!(
            "peer id:      {}\nname:         {}\nlistening:    {}\n{reach}routing table: {} peers ({} connected)\n\
             stored:       {} of {} quota\nchunks:       {} stored; kept as pinned {}, as replicas for the network {}, as cache {} (a chunk may count under more than one)\n\
             repair:       {} chunks responsible, {} below {} proven copies, {} not yet checked, {} handed over\n\
             repair sent:  {} copies ({}); proofs {} valid, {} wrong\n             misbehaviour: {} penalties, {} peers banned now",
            s.peer_id,
            s.name,
            s.listen_addrs.join("\n              "),
            s.routing_table,
            s.connected_peers,
            HumanBytes(s.stored_bytes),
            HumanBytes(s.quota_bytes),
            s.chunks,
            s.chunks_pinned,
            s.chunks_replica,
            s.chunks_cached,
            r.chunks_responsible,
            r.chunks_below_target,
            s.replication,
            r.chunks_unaudited,
            r.handoffs,
            r.copies_sent,
            HumanBytes(r.bytes_sent),
            r.proofs_valid,
            r.proofs_invalid,
            s.penalised_peers,
            s.banned_peers,
        );
        out.print(text, serde_json::to_value(&s)?);
        Ok(())
    }

    pub(crate) async fn health(&self, id: &str, out: &Output) -> anyhow::Result<()> {
        let id = parse_id(id)?;
        let h = self.api.health(id).await?;
        let r = h.replication;
        let mut text = format!(
            "content:  {id}\nchunks:   {}\ncopies:   min {}, median {} (target {r}, verified on other peers)\nat risk:  {} chunks with fewer than {r} verified copies",
            h.chunks,
            h.min,
            h.median,
            h.at_risk.len()
        );
        for c in &h.at_risk {
            text.push_str(&format!(
                "\n  {}: {} verified of {} claimed{}",
                c.id,
                c.copies,
                c.claimed,
                match c.invalid {
                    0 => String::new(),
                    n => format!(", {n} wrong proofs"),
                }
            ));
        }
        out.print(text, serde_json::to_value(&h)?);
        Ok(())
    }

    pub(crate) async fn gc(&self, dry_run: bool, keep: u64, out: &Output) -> anyhow::Result<()> {
        let r = self
            .api
            .gc(GcBody {
                dry_run,
                keep_bytes: keep,
            })
            .await?;
        let verb = if dry_run { "would remove" } else { "removed" };
        let text = format!(
            "{verb} {} cached chunks ({}); {} of cache left",
            r.chunks,
            HumanBytes(r.bytes),
            HumanBytes(r.cache_left_bytes)
        );
        out.print(text, serde_json::to_value(r)?);
        Ok(())
    }
}

/// A progress callback that moves `bar`, and sets its length once the length is known.
fn follow(bar: &ProgressBar) -> ProgressFn {
    let bar = bar.clone();
    Arc::new(move |p: Progress| {
        if let Some(total) = p.total
            && bar.length() != Some(total)
        {
            bar.set_length(total);
        }
        bar.set_position(p.done);
    })
}

fn parse_id(text: &str) -> anyhow::Result<ContentId> {
    Ok(text.parse::<ContentId>()?)
}
