//! Talking to a daemon over its HTTP API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_node::http::{ApiFiles, Listing, PutReply};
use cairn_node::{ContentId, ListingEntry};
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::config::Settings;
use crate::output::Output;

/// A daemon's API.
pub(crate) struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    /// What to name in "no daemon" errors.
    target: String,
}

impl Client {
    /// Finds the daemon: `--api`/`CAIRN_API` if given (token from `CAIRN_TOKEN` or the data
    /// directory), else the address and token the daemon wrote into the data directory.
    pub(crate) fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let files = ApiFiles::new(&settings.data_dir).read();
        let token_env = std::env::var("CAIRN_TOKEN").ok();
        let (addr, token, target) = match (&settings.api, files) {
            (Some(api), files) => {
                let token = token_env.or(files.map(|(_, t)| t)).with_context(|| {
                    format!(
                        "no API token for {api}: set CAIRN_TOKEN, or pass the daemon's --data-dir"
                    )
                })?;
                (api.clone(), token, format!("at {api}"))
            }
            (None, Some((addr, token))) => (
                addr.to_string(),
                token_env.unwrap_or(token),
                format!("for {}", settings.data_dir.display()),
            ),
            (None, None) => bail!(no_daemon(&format!("for {}", settings.data_dir.display()))),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot set up an HTTP client")?;
        Ok(Self {
            base: format!("http://{addr}/api/v0"),
            token,
            http,
            target,
        })
    }

    pub(crate) async fn put(&self, path: &Path, out: &Output) -> anyhow::Result<()> {
        let reply = if path == Path::new("-") {
            let bar = out.bar(None, "put");
            let body = counted(
                tokio_util::io::ReaderStream::new(tokio::io::stdin()),
                bar.clone(),
            );
            let reply = self.upload(body, None, false).await?;
            bar.finish_and_clear();
            reply
        } else {
            let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    anyhow::anyhow!("{}: no such file or directory", path.display())
                }
                _ => anyhow::anyhow!("cannot read {}: {e}", path.display()),
            })?;
            if meta.is_dir() {
                self.put_dir(path, out).await?
            } else {
                let bar = out.bar(Some(meta.len()), "put");
                let reply = self.upload_file(path, false, &bar).await?;
                bar.finish_and_clear();
                reply
            }
        };
        if reply.replicas == 0 && !out.json {
            eprintln!(
                "warning: stored on this node only; no other peer took a copy (is the daemon connected to a network?)"
            );
        }
        out.print(&reply.id, serde_json::to_value(&reply)?);
        Ok(())
    }

    async fn put_dir(&self, root: &Path, out: &Output) -> anyhow::Result<PutReply> {
        let mut files = Vec::new();
        let mut listing = Vec::new();
        walk(root, String::new(), &mut files, &mut listing)?;
        let total: u64 = files.iter().map(|(_, _, len)| *len).sum();
        let bar = out.bar(Some(total), "put");
        for (rel, path, _) in files {
            let reply = self.upload_file(&path, true, &bar).await?;
            let id: ContentId = reply
                .id
                .parse()
                .context("the daemon answered a malformed id")?;
            listing.push(ListingEntry::File {
                path: rel,
                id,
                size: reply.size,
            });
        }
        bar.finish_and_clear();
        let response = self
            .send(self.http.post(format!("{}/dir", self.base)).json(&listing))
            .await?;
        Ok(response.json().await?)
    }

    async fn upload_file(
        &self,
        path: &Path,
        part: bool,
        bar: &ProgressBar,
    ) -> anyhow::Result<PutReply> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        let len = file.metadata().await.ok().map(|m| m.len());
        let body = counted(tokio_util::io::ReaderStream::new(file), bar.clone());
        self.upload(body, len, part).await
    }

    async fn upload(
        &self,
        body: impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync + 'static,
        len: Option<u64>,
        part: bool,
    ) -> anyhow::Result<PutReply> {
        let mut request = self
            .http
            .post(format!("{}/put", self.base))
            .query(&[("part", part)])
            .body(reqwest::Body::wrap_stream(body));
        if let Some(len) = len {
            request = request.header(reqwest::header::CONTENT_LENGTH, len);
        }
        Ok(self.send(request).await?.json().await?)
    }

    pub(crate) async fn get(
        &self,
        id: &str,
        output: Option<PathBuf>,
        out: &Output,
    ) -> anyhow::Result<()> {
        let id = parse_id(id)?;
        let listing = self.ls(&id).await?;
        let dest = output.unwrap_or_else(|| PathBuf::from(id.to_string()));
        if dest.is_dir() {
            bail!(
                "{} already exists; choose another output path or remove it",
                dest.display()
            );
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let staging = tempfile::Builder::new()
            .prefix(".cairn-get-")
            .tempdir_in(&parent)
            .with_context(|| format!("cannot write into {}", parent.display()))?;
        let staged = staging.path().join("content");
        let size = listing.size;
        let bar = out.bar(Some(size), "get");
        if listing.kind == "dir" {
            self.download_dir(listing, &staged, &bar).await?;
        } else {
            self.download(&id.to_string(), &staged, &bar).await?;
        }
        bar.finish_and_clear();
        std::fs::rename(&staged, &dest)
            .with_context(|| format!("cannot write {}", dest.display()))?;
        out.print(
            format!("{}", dest.display()),
            serde_json::json!({ "id": id.to_string(), "path": dest, "size": size }),
        );
        Ok(())
    }

    fn download_dir<'a>(
        &'a self,
        listing: Listing,
        dir: &'a Path,
        bar: &'a ProgressBar,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for entry in listing.entries {
                if !cairn_node::manifest::valid_name(&entry.name) {
                    bail!("the directory has an invalid entry name {:?}", entry.name);
                }
                let path = dir.join(&entry.name);
                if entry.kind == "dir" {
                    let sub = self.ls(&parse_id(&entry.id)?).await?;
                    self.download_dir(sub, &path, bar).await?;
                } else {
                    self.download(&entry.id, &path, bar).await?;
                }
            }
            Ok(())
        })
    }

    async fn download(&self, id: &str, path: &Path, bar: &ProgressBar) -> anyhow::Result<()> {
        let response = self
            .send(self.http.get(format!("{}/get/{id}", self.base)))
            .await?;
        let mut file = tokio::fs::File::create(path)
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context("the download broke off")?;
            file.write_all(&chunk)
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
            bar.inc(chunk.len() as u64);
        }
        file.sync_all().await?;
        Ok(())
    }

    pub(crate) async fn cat(&self, id: &str) -> anyhow::Result<()> {
        let id = parse_id(id)?;
        let response = self
            .send(self.http.get(format!("{}/get/{id}", self.base)))
            .await?;
        let mut stdout = tokio::io::stdout();
        let mut stream = response.bytes_stream().map_err(std::io::Error::other);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context("the download broke off")?;
            if let Err(e) = stdout.write_all(&chunk).await {
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
        let url = format!("{}/pins/{id}", self.base);
        let request = if add {
            self.http.post(url)
        } else {
            self.http.delete(url)
        };
        let reply: Value = self.send(request).await?.json().await?;
        let changed = reply["changed"].as_bool().unwrap_or(false);
        let text = match (add, changed) {
            (true, true) => format!("pinned {id}"),
            (true, false) => format!("{id} was already pinned"),
            (false, true) => format!("unpinned {id}"),
            (false, false) => format!("{id} was not pinned"),
        };
        out.print(text, reply);
        Ok(())
    }

    pub(crate) async fn pins(&self, out: &Output) -> anyhow::Result<()> {
        let reply: Value = self
            .send(self.http.get(format!("{}/pins", self.base)))
            .await?
            .json()
            .await?;
        let text = reply
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        out.print(text, reply);
        Ok(())
    }

    pub(crate) async fn publish(&self, id: &str, ttl: u64, out: &Output) -> anyhow::Result<()> {
        let id = parse_id(id)?;
        let body = serde_json::json!({ "id": id.to_string(), "ttl_secs": ttl });
        let reply: Value = self
            .send(self.http.post(format!("{}/names", self.base)).json(&body))
            .await?
            .json()
            .await?;
        let text = format!(
            "{} -> {} (stored on {} peers)",
            reply["name"].as_str().unwrap_or("?"),
            id,
            reply["stored"]
        );
        out.print(text, reply);
        Ok(())
    }

    pub(crate) async fn resolve(&self, name: &str, out: &Output) -> anyhow::Result<()> {
        let name: cairn_node::Name = name.parse()?;
        let url = format!("{}/names/{name}", self.base);
        let reply: Value = self.send(self.http.get(url)).await?.json().await?;
        let id = reply["id"]
            .as_str()
            .context("the daemon's answer has no content id")?
            .to_owned();
        out.print(id, reply);
        Ok(())
    }

    pub(crate) async fn peers(&self, out: &Output) -> anyhow::Result<()> {
        let reply: Value = self
            .send(self.http.get(format!("{}/peers", self.base)))
            .await?
            .json()
            .await?;
        let mut text = String::new();
        for p in reply.as_array().into_iter().flatten() {
            let rtt = p["rtt_ms"]
                .as_f64()
                .map_or("-".into(), |r| format!("{r:.1} ms"));
            let conn = if p["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                ""
            };
            text.push_str(&format!(
                "{}  {}  {rtt}  {conn}\n",
                p["peer_id"].as_str().unwrap_or("?"),
                p["addr"].as_str().unwrap_or("?")
            ));
        }
        out.print(text.trim_end(), reply);
        Ok(())
    }

    pub(crate) async fn status(&self, out: &Output) -> anyhow::Result<()> {
        let s: Value = self
            .send(self.http.get(format!("{}/status", self.base)))
            .await?
            .json()
            .await?;
        let addrs = s["listen_addrs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join("\n              ")
            })
            .unwrap_or_default();
        let text = format!(
            "peer id:      {}\nname:         {}\nlistening:    {addrs}\nrouting table: {} peers ({} connected)\n\
             stored:       {} of {} bytes quota\nchunks:       {} ({} pinned, {} replica, {} cached)",
            s["peer_id"].as_str().unwrap_or("?"),
            s["name"].as_str().unwrap_or("?"),
            s["routing_table"],
            s["connected_peers"],
            s["stored_bytes"],
            s["quota_bytes"],
            s["chunks"],
            s["chunks_pinned"],
            s["chunks_replica"],
            s["chunks_cached"],
        );
        out.print(text, s);
        Ok(())
    }

    async fn ls(&self, id: &ContentId) -> anyhow::Result<Listing> {
        Ok(self
            .send(self.http.get(format!("{}/ls/{id}", self.base)))
            .await?
            .json()
            .await?)
    }

    /// Sends with the token; turns a refused connection and an error status into one-line
    /// errors.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request.bearer_auth(&self.token).send().await.map_err(|e| {
            if e.is_connect() {
                anyhow::anyhow!(no_daemon(&self.target))
            } else {
                anyhow::anyhow!("the daemon {} did not answer: {e}", self.target)
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let message = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("the daemon answered {status}"));
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "the daemon {} refused the API token: {message}",
                self.target
            );
        }
        bail!("{message}")
    }
}

fn no_daemon(target: &str) -> String {
    format!("no cairn daemon is running {target}; start one with 'cairn daemon'")
}

fn parse_id(text: &str) -> anyhow::Result<ContentId> {
    Ok(text.parse::<ContentId>()?)
}

/// Counts bytes through a progress bar.
fn counted<S>(
    stream: S,
    bar: ProgressBar,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync
where
    S: futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync,
{
    stream.inspect_ok(move |b| bar.inc(b.len() as u64))
}

/// Collects the regular files under `dir` (relative path, path, length) and its empty
/// directories, sorted; skips symbolic links and special files with a warning.
fn walk(
    dir: &Path,
    rel: String,
    files: &mut Vec<(String, PathBuf, u64)>,
    listing: &mut Vec<ListingEntry>,
) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    if entries.is_empty() && !rel.is_empty() {
        listing.push(ListingEntry::Dir { path: rel.clone() });
    }
    for entry in entries {
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .ok()
            .filter(|n| cairn_node::manifest::valid_name(n))
            .with_context(|| {
                format!(
                    "{}: file name is not valid UTF-8 or not a valid name; rename it",
                    path.display()
                )
            })?;
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            walk(&path, child, files, listing)?;
        } else if meta.is_file() {
            files.push((child, path, meta.len()));
        } else {
            tracing::warn!(path = %path.display(), "skipping: not a regular file or directory");
        }
    }
    Ok(())
}
