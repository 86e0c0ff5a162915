//! Talking to a daemon over its HTTP API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cairn_node::framed::{Decoder, Frame};
use cairn_node::fsutil::{FileChanged, FileSnapshot, OutputTarget, output_target, staging_dir};
use cairn_node::http::{
    ApiFiles, DirBody, FileCount, KeyReply, Listing, ListingItem, NameReply, PublishBody,
    PublishReply, PutReply, ResolvedReply, UploadReply,
};
use cairn_node::manifest::MAX_DEPTH;
use cairn_node::{ContentId, ContentPath, ContentRoot, DirWalk, KeyName, WalkStep};
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
        let started = std::time::Instant::now();
        let reply = if path == Path::new("-") {
            let bar = out.bar(None, "put");
            let body = counted(
                tokio_util::io::ReaderStream::new(tokio::io::stdin()),
                bar.clone(),
            );
            let reply = self.upload(body, None).await?;
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
                // The length is only a hint for the bar: pipes and /proc files say 0 and are
                // read to their end.
                let bar = out.bar((meta.len() > 0).then_some(meta.len()), "put");
                let reply = self.upload_file(path, None, &bar).await?;
                bar.finish_and_clear();
                reply
            }
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

    /// Uploads a directory tree, as one upload: every file as a part, then each directory,
    /// deepest first, as one bounded request; the root's request pins the tree.
    async fn put_dir(&self, root: &Path, out: &Output) -> anyhow::Result<PutReply> {
        let mut upload = None;
        let result = self.put_tree(root, out, &mut upload).await;
        if let (Err(_), Some(upload)) = (&result, upload) {
            // Best effort: the daemon also ends an upload whose piece failed, or that idles.
            let url = format!("{}/uploads/{upload}", self.base);
            let _ = self.send(self.http.delete(url)).await;
        }
        result
    }

    /// [`Client::put_dir`]'s walk and upload; `started` is the upload's id once it has one.
    async fn put_tree(
        &self,
        root: &Path,
        out: &Output,
        started: &mut Option<u64>,
    ) -> anyhow::Result<PutReply> {
        let mut total = 0u64;
        for step in DirWalk::new(root)? {
            if let WalkStep::File { len, .. } = step? {
                total = total.saturating_add(len);
            }
        }
        let bar = out.bar(Some(total), "put");
        // One upload for the whole tree: the daemon keeps its first files until the root pins.
        let UploadReply { upload } = self
            .send(self.http.post(format!("{}/uploads", self.base)))
            .await?
            .json()
            .await?;
        *started = Some(upload);
        let mut sum = PutReply {
            id: String::new(),
            size: 0,
            chunks: 0,
            replicas: 0,
            replica_failures: 0,
        };
        let mut add = |r: &PutReply| {
            sum.chunks += r.chunks;
            sum.replicas += r.replicas;
            sum.replica_failures += r.replica_failures;
        };
        // One list of entries per open directory, the root's at the bottom.
        let mut open: Vec<(String, Vec<ListingItem>)> = vec![(String::new(), Vec::new())];
        for step in DirWalk::new(root)? {
            match step? {
                WalkStep::Open { name } => open.push((name, Vec::new())),
                WalkStep::File { name, path, .. } => {
                    let reply = self.upload_file(&path, Some(upload), &bar).await?;
                    add(&reply);
                    if let Some((_, entries)) = open.last_mut() {
                        entries.push(ListingItem {
                            name,
                            kind: "file".into(),
                            id: reply.id,
                            size: reply.size,
                        });
                    }
                }
                WalkStep::Skipped { path } => {
                    tracing::warn!(path = %path.display(), "skipping: not a regular file or directory");
                }
                WalkStep::Close { .. } => {
                    let Some((name, entries)) = open.pop() else {
                        break;
                    };
                    let body = DirBody {
                        entries,
                        root: open.is_empty(),
                        upload: Some(upload),
                    };
                    let reply: PutReply = self
                        .send(self.http.post(format!("{}/dir", self.base)).json(&body))
                        .await?
                        .json()
                        .await?;
                    add(&reply);
                    match open.last_mut() {
                        Some((_, parent)) => parent.push(ListingItem {
                            name,
                            kind: "dir".into(),
                            id: reply.id,
                            size: reply.size,
                        }),
                        None => {
                            bar.finish_and_clear();
                            return Ok(PutReply {
                                id: reply.id,
                                size: reply.size,
                                ..sum
                            });
                        }
                    }
                }
            }
        }
        bail!("the walk of {} ended before its root", root.display())
    }

    /// Uploads one file, read to the end of what it gives; fails, naming it, if it changed
    /// while it was read.
    async fn upload_file(
        &self,
        path: &Path,
        part: Option<u64>,
        bar: &ProgressBar,
    ) -> anyhow::Result<PutReply> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?;
        let snapshot = FileSnapshot::of(&meta);
        let watch = file
            .try_clone()
            .with_context(|| format!("cannot read {}", path.display()))?;
        let read = Arc::new(AtomicU64::new(0));
        let changed = Arc::new(AtomicBool::new(false));
        let (counter, flag) = (read.clone(), changed.clone());
        // After the last byte, check the file against how it was when opened; an error here
        // aborts the upload, so the daemon never stores a mix of two versions.
        let check = futures::stream::once(async move {
            let now = watch.metadata()?;
            if snapshot.changed(&now, counter.load(Ordering::Relaxed)) {
                flag.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other(FileChanged));
            }
            Ok(bytes::Bytes::new())
        })
        .try_filter(|b| futures::future::ready(!b.is_empty()));
        let body = counted(
            tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 << 10),
            bar.clone(),
        )
        .inspect_ok(move |b| {
            read.fetch_add(b.len() as u64, Ordering::Relaxed);
        })
        .chain(check);
        let result = self.upload(body, part).await;
        if changed.load(Ordering::Relaxed) {
            bail!(cairn_node::PutError::Changed(path.to_owned()));
        }
        result
    }

    /// Streams a body into a put (chunked: the length of what is read is known only at its end):
    /// content of its own, or with `part`, a file of that directory upload.
    async fn upload(
        &self,
        body: impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync + 'static,
        part: Option<u64>,
    ) -> anyhow::Result<PutReply> {
        let mut request = self.http.post(format!("{}/put", self.base));
        if let Some(upload) = part {
            request = request.query(&[("part", "true"), ("upload", &upload.to_string())]);
        }
        let request = request.body(reqwest::Body::wrap_stream(body));
        Ok(self.send(request).await?.json().await?)
    }

    /// Gets what `target` (`ID[/path]` or `NAME[/path]`) leads to, to `output` (default: the
    /// path's last segment, else the id or name, in the current directory). A file or a
    /// directory tree appears whole or not at all; a device or FIFO is written to in place; a
    /// symbolic link is followed.
    pub(crate) async fn get(
        &self,
        target: &str,
        output: Option<PathBuf>,
        force: bool,
        out: &Output,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let target: ContentPath = target.parse()?;
        let id = self.content_id(&target).await?;
        let listing = self.ls(&id).await?;
        if output.as_deref() == Some(Path::new("-")) {
            if listing.kind == "dir" {
                bail!(
                    "{target} is a directory; it cannot be written to standard output (give -o DIR, or `cairn ls` it)"
                );
            }
            return self.write_stdout(&id).await;
        }
        let dest = output.unwrap_or_else(|| {
            // Entry names are checked by `valid_name` when a directory is written; a path's
            // last segment is one of them.
            match target.file_name() {
                Some(name) if cairn_node::manifest::valid_name(name) => PathBuf::from(name),
                _ => PathBuf::from(target.root.to_string()),
            }
        });
        let size = listing.size;
        let target_kind = output_target(&dest)?;
        if let OutputTarget::Create(path) = &target_kind
            && !force
            && std::fs::symlink_metadata(path).is_ok()
        {
            bail!(
                "{} already exists; pass --force to replace it, or choose another path with -o",
                path.display()
            );
        }
        let bar = out.bar(Some(size), "get");
        let written = match target_kind {
            OutputTarget::Special(path) => {
                if listing.kind == "dir" {
                    bail!(
                        "{id} is a directory; it cannot be written to {}",
                        path.display()
                    );
                }
                let file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .await
                    .with_context(|| format!("cannot write {}", path.display()))?;
                self.download(&id.to_string(), file, &path, &bar).await?;
                path
            }
            OutputTarget::Create(path) => {
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                    _ => PathBuf::from("."),
                };
                let staging = staging_dir(&parent)
                    .with_context(|| format!("cannot write into {}", parent.display()))?;
                let staged = staging.path().join("content");
                if listing.kind == "dir" {
                    // Refused before anything is written if the tree expands past the limit.
                    let _: FileCount = self.get_json(&format!("/count/{id}")).await?;
                    self.download_dir(listing, &staged, &bar).await?;
                } else {
                    let file = create(&staged).await?;
                    self.download(&id.to_string(), file, &staged, &bar).await?;
                }
                std::fs::rename(&staged, &path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                path
            }
        };
        bar.finish_and_clear();
        out.summary("got", size, started, None);
        out.print(
            format!("{}", written.display()),
            serde_json::json!({
                "target": target.to_string(),
                "id": id.to_string(),
                "path": written,
                "size": size,
            }),
        );
        Ok(())
    }

    /// The content id `target` leads to: itself for a bare id, else asked of the daemon, which
    /// resolves the name and follows the path.
    async fn content_id(&self, target: &ContentPath) -> anyhow::Result<ContentId> {
        if let (ContentRoot::Id(id), "") = (target.root, target.path.as_str()) {
            return Ok(id);
        }
        let mut url = reqwest::Url::parse(&format!("{}/resolve", self.base))?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the API address {} is no base URL", self.base))?
            .push(&target.root.to_string())
            .extend(target.path.split('/').filter(|s| !s.is_empty()));
        let reply: ResolvedReply = self.send(self.http.get(url)).await?.json().await?;
        parse_id(&reply.id)
    }

    /// Writes a directory tree to `dir`, which must not exist: iteratively, and no deeper than
    /// the node's walks go.
    async fn download_dir(
        &self,
        listing: Listing,
        dir: &Path,
        bar: &ProgressBar,
    ) -> anyhow::Result<()> {
        std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut open = vec![(dir.to_owned(), reversed(listing.entries))];
        while let Some((here, entries)) = open.last_mut() {
            let Some(entry) = entries.pop() else {
                open.pop();
                continue;
            };
            if !cairn_node::manifest::valid_name(&entry.name) {
                bail!("the directory has an invalid entry name {:?}", entry.name);
            }
            let path = here.join(&entry.name);
            if entry.kind == "dir" {
                if open.len() >= MAX_DEPTH {
                    bail!(
                        "the directory nests more than {MAX_DEPTH} levels deep, which cairn refuses"
                    );
                }
                let sub = self.ls(&parse_id(&entry.id)?).await?;
                std::fs::create_dir(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                open.push((path, reversed(sub.entries)));
            } else {
                let file = create(&path).await?;
                self.download(&entry.id, file, &path, bar).await?;
            }
        }
        Ok(())
    }

    /// Streams a file from the daemon into `file` (at `path`, for errors). The body is framed,
    /// so a get that fails midway reports the daemon's reason, and a cut body is noticed.
    async fn download(
        &self,
        id: &str,
        mut file: tokio::fs::File,
        path: &Path,
        bar: &ProgressBar,
    ) -> anyhow::Result<()> {
        let mut frames = std::pin::pin!(self.framed_get(id).await?);
        while let Some(bytes) = frames.next().await {
            let bytes = bytes?;
            file.write_all(&bytes)
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
            bar.inc(bytes.len() as u64);
        }
        file.flush()
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
        if file.metadata().await.is_ok_and(|m| m.is_file()) {
            file.sync_all()
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// The bytes of a file, decoded from the daemon's framed body; ends with the daemon's error
    /// if the get failed, or with an error of its own if the body was cut.
    async fn framed_get(
        &self,
        id: &str,
    ) -> anyhow::Result<impl futures::Stream<Item = anyhow::Result<bytes::Bytes>> + use<>> {
        let response = self
            .send(
                self.http
                    .get(format!("{}/get/{id}", self.base))
                    .query(&[("framed", true)]),
            )
            .await?;
        let target = self.target.clone();
        let body = Box::pin(response.bytes_stream());
        Ok(futures::stream::try_unfold(
            (body, Decoder::new()),
            move |(mut body, mut decoder)| {
                let target = target.clone();
                async move {
                    loop {
                        match decoder.next_frame()? {
                            Some(Frame::Data(bytes)) => return Ok(Some((bytes, (body, decoder)))),
                            Some(Frame::Error(message)) => bail!("{message}"),
                            Some(Frame::End) => return Ok(None),
                            None => {}
                        }
                        match body.next().await {
                            Some(Ok(piece)) => decoder.push(&piece),
                            Some(Err(e)) => bail!(
                                "the daemon {target} stopped sending before the end of the content ({e}); try again"
                            ),
                            None => bail!(
                                "the daemon {target} stopped sending before the end of the content; try again"
                            ),
                        }
                    }
                }
            },
        ))
    }

    pub(crate) async fn cat(&self, target: &str) -> anyhow::Result<()> {
        let id = self.content_id(&target.parse()?).await?;
        self.write_stdout(&id).await
    }

    /// Writes a file's bytes to standard output.
    async fn write_stdout(&self, id: &ContentId) -> anyhow::Result<()> {
        let mut frames = std::pin::pin!(self.framed_get(&id.to_string()).await?);
        let mut stdout = tokio::io::stdout();
        while let Some(bytes) = frames.next().await {
            if let Err(e) = stdout.write_all(&bytes?).await {
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

    /// Lists pinned content: a line (or a JSON object) each.
    pub(crate) async fn pins(&self, out: &Output) -> anyhow::Result<()> {
        let pins: Vec<String> = self.get_json("/pins").await?;
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
        let id = self.content_id(&target).await?;
        let listing = self.ls(&id).await?;
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
                    indicatif::HumanBytes(e.size).to_string(),
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
        let _: Value = self.get_json("/status").await?;
        let origin = self.base.trim_end_matches("/api/v0");
        let url = format!("{origin}/ui/#token={}", self.token);
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
        let body = PublishBody {
            id: id.to_string(),
            ttl_secs: Some(ttl.as_secs()),
            key: Some(key.to_string()),
        };
        let reply: PublishReply = self
            .send(self.http.post(format!("{}/names", self.base)).json(&body))
            .await?
            .json()
            .await?;
        if reply.stored == 0 && !out.json {
            eprintln!(
                "warning: the name is on this node only; no other peer took the record (is the daemon connected to a network?)"
            );
        }
        out.print(&reply.name, serde_json::to_value(&reply)?);
        Ok(())
    }

    pub(crate) async fn resolve(&self, name: &str, out: &Output) -> anyhow::Result<()> {
        let name: cairn_node::Name = name.parse()?;
        let url = format!("{}/names/{name}", self.base);
        let reply: NameReply = self.send(self.http.get(url)).await?.json().await?;
        out.print(&reply.id, serde_json::to_value(&reply)?);
        Ok(())
    }

    /// Creates key `name` and prints its name.
    pub(crate) async fn generate_key(&self, name: &str, out: &Output) -> anyhow::Result<()> {
        let key: KeyName = name.parse()?;
        let url = format!("{}/keys/{key}", self.base);
        let reply: KeyReply = self.send(self.http.post(url)).await?.json().await?;
        out.print(&reply.name, serde_json::to_value(&reply)?);
        Ok(())
    }

    /// Lists the keys: a line each, or a JSON object each.
    pub(crate) async fn keys(&self, out: &Output) -> anyhow::Result<()> {
        let keys: Vec<KeyReply> = self.get_json("/keys").await?;
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
        let key: KeyName = name.parse()?;
        let url = format!("{}/keys/{key}", self.base);
        let reply: KeyReply = self.send(self.http.delete(url)).await?.json().await?;
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
        let reply: Value = self.get_json("/invite").await?;
        let ticket = reply["ticket"].as_str().unwrap_or("?").to_owned();
        out.print(ticket, reply);
        Ok(())
    }

    /// Joins through the node of `ticket` before a get (`cairn get ID --from TICKET`), saying
    /// nothing unless it fails.
    pub(crate) async fn join_quietly(&self, ticket: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "addr": ticket });
        self.send(self.http.post(format!("{}/peers", self.base)).json(&body))
            .await?;
        Ok(())
    }

    pub(crate) async fn add_peer(&self, addr: &str, out: &Output) -> anyhow::Result<()> {
        let body = serde_json::json!({ "addr": addr });
        let reply: Value = self
            .send(self.http.post(format!("{}/peers", self.base)).json(&body))
            .await?
            .json()
            .await?;
        let text = format!(
            "joined through {}: {} close peers answered",
            reply["addr"].as_str().unwrap_or(addr),
            reply["peers"]
        );
        out.print(text, reply);
        Ok(())
    }

    pub(crate) async fn peers(&self, out: &Output) -> anyhow::Result<()> {
        let reply: Value = self.get_json("/peers").await?;
        let peers = reply.as_array().cloned().unwrap_or_default();
        if out.json {
            for p in peers {
                out.print("", p);
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
                    p["peer_id"].as_str().unwrap_or("?").to_owned(),
                    p["addr"].as_str().unwrap_or("?").to_owned(),
                    p["rtt_ms"]
                        .as_f64()
                        .map_or("-".into(), |r| format!("{r:.1} ms")),
                    match (p["connected"].as_bool(), p["relayed"].as_bool()) {
                        (Some(true), Some(true)) => "relayed".into(),
                        (Some(true), _) => "direct".into(),
                        _ => "-".into(),
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
        let s: Value = self.get_json("/status").await?;
        let addrs = s["listen_addrs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join("\n              ")
            })
            .unwrap_or_default();
        let list = |key: &str| {
            s[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join("\n              ")
                })
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "none".into())
        };
        let reach = format!(
            "network:      {}\nreachable:    {} (external: {}; relayed: {}; {} hole punches)\n",
            s["network"].as_str().unwrap_or("?"),
            s["reachability"].as_str().unwrap_or("?"),
            list("external_addrs"),
            list("relayed_addrs"),
            s["hole_punches"],
        );
        let text = format!(
            "peer id:      {}\nname:         {}\nlistening:    {addrs}\n{reach}routing table: {} peers ({} connected)\n\
             stored:       {} of {} quota\nchunks:       {} stored; kept as pinned {}, as replicas for the network {}, as cache {} (a chunk may count under more than one)\n\
             repair:       {} chunks responsible, {} below {} proven copies, {} not yet checked, {} handed over\n\
             repair sent:  {} copies ({}); proofs {} valid, {} wrong\n             misbehaviour: {} penalties, {} peers banned now",
            s["peer_id"].as_str().unwrap_or("?"),
            s["name"].as_str().unwrap_or("?"),
            s["routing_table"],
            s["connected_peers"],
            human(&s["stored_bytes"]),
            human(&s["quota_bytes"]),
            s["chunks"],
            s["chunks_pinned"],
            s["chunks_replica"],
            s["chunks_cached"],
            s["repair"]["chunks_responsible"],
            s["repair"]["chunks_below_target"],
            s["replication"],
            s["repair"]["chunks_unaudited"],
            s["repair"]["handoffs"],
            s["repair"]["copies_sent"],
            human(&s["repair"]["bytes_sent"]),
            s["repair"]["proofs_valid"],
            s["repair"]["proofs_invalid"],
            s["penalised_peers"],
            s["banned_peers"],
        );
        out.print(text, s);
        Ok(())
    }

    pub(crate) async fn health(&self, id: &str, out: &Output) -> anyhow::Result<()> {
        let id = parse_id(id)?;
        let h: Value = self.get_json(&format!("/health/{id}")).await?;
        let r = &h["replication"];
        let at_risk = h["at_risk"].as_array().cloned().unwrap_or_default();
        let mut text = format!(
            "content:  {id}\nchunks:   {}\ncopies:   min {}, median {} (target {r}, verified on other peers)\nat risk:  {} chunks with fewer than {r} verified copies",
            h["chunks"],
            h["min"],
            h["median"],
            at_risk.len()
        );
        for c in &at_risk {
            let chunk = c["id"].as_str().unwrap_or("?");
            text.push_str(&format!(
                "\n  {chunk}: {} verified of {} claimed{}",
                c["copies"],
                c["claimed"],
                match c["invalid"].as_u64() {
                    Some(n @ 1..) => format!(", {n} wrong proofs"),
                    _ => String::new(),
                }
            ));
        }
        out.print(text, h);
        Ok(())
    }

    pub(crate) async fn gc(&self, dry_run: bool, keep: u64, out: &Output) -> anyhow::Result<()> {
        let body = serde_json::json!({ "dry_run": dry_run, "keep_bytes": keep });
        let r: Value = self
            .send(self.http.post(format!("{}/gc", self.base)).json(&body))
            .await?
            .json()
            .await?;
        let verb = if dry_run { "would remove" } else { "removed" };
        let text = format!(
            "{verb} {} cached chunks ({}); {} of cache left",
            r["chunks"],
            human(&r["bytes"]),
            human(&r["cache_left_bytes"])
        );
        out.print(text, r);
        Ok(())
    }

    async fn ls(&self, id: &ContentId) -> anyhow::Result<Listing> {
        self.get_json(&format!("/ls/{id}")).await
    }

    /// `GET /api/v0{path}`, its JSON reply.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        Ok(self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?
            .json()
            .await?)
    }

    /// Sends with the token; turns a refused connection and an error status into one-line
    /// errors.
    /// A request whose body can be sent again (all but streamed uploads) is retried a few
    /// times, backing off, when the connection closes before an answer: the daemon closes new
    /// connections at once while its connection table is full (see `cairn_node::http`).
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let request = request.bearer_auth(&self.token);
        let mut backoff = Duration::from_millis(250);
        let mut retries = 4;
        // Only requests that are safe to repeat: reads, and the directory steps of an upload.
        let idempotent = request
            .try_clone()
            .and_then(|r| r.build().ok())
            .is_some_and(|r| {
                r.method() == reqwest::Method::GET || r.url().path().ends_with("/dir")
            });
        if !idempotent {
            retries = 0;
        }
        let response = loop {
            let again = if retries > 0 {
                request.try_clone()
            } else {
                None
            };
            let attempt = match again {
                Some(copy) => copy.send().await,
                None => break request.send().await,
            };
            match attempt {
                Err(e) if !e.is_connect() && !e.is_timeout() => {
                    tracing::debug!(%e, "the daemon closed the connection; trying again");
                    retries -= 1;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                other => break other,
            }
        };
        let response = response.map_err(|e| {
            if e.is_connect() {
                anyhow::anyhow!(no_daemon(&self.target))
            } else {
                // Connected, then the answer never came: the daemon died or dropped the request.
                anyhow::anyhow!(
                    "the daemon {} stopped answering during the request ({e}); nothing it stored before is lost: check that it still runs (start it with `cairn daemon`) and try again",
                    self.target
                )
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

/// A JSON byte count as people read it (`3.2 GiB`); `?` if it is not a number.
fn human(bytes: &Value) -> String {
    bytes
        .as_u64()
        .map_or_else(|| "?".into(), |b| indicatif::HumanBytes(b).to_string())
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

/// `v` reversed, so that popping from the end visits it in order.
fn reversed<T>(mut v: Vec<T>) -> Vec<T> {
    v.reverse();
    v
}

/// Creates a file to download into.
async fn create(path: &Path) -> anyhow::Result<tokio::fs::File> {
    tokio::fs::File::create(path)
        .await
        .with_context(|| format!("cannot write {}", path.display()))
}
