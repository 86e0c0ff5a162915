//! The daemon's HTTP API and read-only gateway (axum), served on loopback.
//!
//! - `/api/v0/...` needs `Authorization: Bearer <token>`; the token is random per daemon start
//!   and written, with the API address, into the data directory (mode 0600) so that the command
//!   line finds both (see [`ApiFiles`]).
//! - `/c/<id>` and `/c/<id>/path/in/dir` serve content to anyone who can reach the loopback
//!   address, with Content-Type, Content-Length and range requests.
//!
//! | method and path | does |
//! |---|---|
//! | `POST /api/v0/put[?part=true]` | body streamed into a put; `part` stores a file of a directory put |
//! | `POST /api/v0/dir` | JSON [`DirBody`]: one directory of stored entries (deepest first); `root` pins the tree |
//! | `GET /api/v0/get/<id>` | file bytes, streamed; `Range` supported |
//! | `GET /api/v0/ls/<id>` | the manifest: kind, size, entries |
//! | `GET /api/v0/pins`, `POST/DELETE /api/v0/pins/<id>` | pins |
//! | `GET /api/v0/peers`, `GET /api/v0/status` | peers, status |
//! | `POST /api/v0/names` `{"id": …}`, `GET /api/v0/names/<name>` | publish, resolve a name |
//!
//! Errors are JSON `{"error": "…"}` with a fitting status code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::error::{GetError, NameError, PutError};
use crate::manifest::{EntryKind, Manifest};
use crate::names::{DEFAULT_NAME_TTL, Name};
use crate::{ContentId, Node};

/// File in the data directory holding the API address.
pub const API_ADDR_FILE: &str = "api.addr";
/// File in the data directory holding the API token.
pub const API_TOKEN_FILE: &str = "api.token";

/// The files through which a daemon tells the command line where its API is.
#[derive(Clone, Debug)]
pub struct ApiFiles {
    dir: PathBuf,
}

impl ApiFiles {
    /// The files in data directory `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Writes the address and token (mode 0600).
    pub fn write(&self, addr: SocketAddr, token: &str) -> std::io::Result<()> {
        crate::fsutil::write_private(&self.dir.join(API_TOKEN_FILE), token.as_bytes())?;
        crate::fsutil::write_private(&self.dir.join(API_ADDR_FILE), addr.to_string().as_bytes())
    }

    /// Reads the address and token, if a daemon wrote them.
    pub fn read(&self) -> Option<(SocketAddr, String)> {
        let addr = std::fs::read_to_string(self.dir.join(API_ADDR_FILE)).ok()?;
        let token = std::fs::read_to_string(self.dir.join(API_TOKEN_FILE)).ok()?;
        Some((addr.trim().parse().ok()?, token.trim().to_owned()))
    }

    /// Removes them (the daemon is stopping).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(self.dir.join(API_ADDR_FILE));
        let _ = std::fs::remove_file(self.dir.join(API_TOKEN_FILE));
    }
}

/// A new random API token.
pub fn new_token() -> String {
    use rand::Rng;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    blake3::Hash::from_bytes(bytes).to_hex().to_string()
}

#[derive(Clone)]
struct AppState {
    node: Node,
    token: Arc<str>,
}

/// The API and gateway routes for `node`, requiring `token` on `/api`.
pub fn router(node: Node, token: &str) -> Router {
    let state = AppState {
        node,
        token: token.into(),
    };
    let api = Router::new()
        .route("/put", post(put))
        .route("/dir", post(put_dir))
        .route("/get/{id}", get(get_file))
        .route("/ls/{id}", get(ls))
        .route("/pins", get(pins))
        .route("/pins/{id}", post(pin).delete(unpin))
        .route("/peers", get(peers))
        .route("/status", get(status))
        .route("/names", post(publish))
        .route("/names/{name}", get(resolve))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .nest("/api/v0", api)
        .route("/c/{id}", get(gateway_root))
        .route("/c/{id}/", get(gateway_root))
        .route("/c/{id}/{*path}", get(gateway_path))
        .with_state(state)
}

/// Serves `router(node, token)` on `listener` until `shutdown` resolves.
pub fn serve(
    listener: TcpListener,
    node: Node,
    token: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'static {
    let app = router(node, token);
    async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// An API error: a status and a one-line message.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<GetError> for ApiError {
    fn from(e: GetError) -> Self {
        let status = match &e {
            GetError::NotFound(_) | GetError::NoSuchPath { .. } => StatusCode::NOT_FOUND,
            GetError::Unavailable { .. } | GetError::Damaged { .. } => StatusCode::BAD_GATEWAY,
            GetError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            GetError::IsDirectory(_) | GetError::Manifest { .. } | GetError::TooDeep(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<PutError> for ApiError {
    fn from(e: PutError) -> Self {
        let status = match &e {
            PutError::BadName(_)
            | PutError::TooManyEntries(_)
            | PutError::TooDeep(_)
            | PutError::DuplicateName(_)
            | PutError::BadEntry { .. } => StatusCode::BAD_REQUEST,
            PutError::Store(crate::store::StoreError::QuotaFull { .. }) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        let status = match &e {
            NameError::Malformed(_) => StatusCode::BAD_REQUEST,
            NameError::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

fn parse_id(text: &str) -> Result<ContentId, ApiError> {
    text.parse()
        .map_err(|e: crate::ContentIdError| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare hashes so the comparison takes the same time whatever the guess.
    let ok =
        given.is_some_and(|g| blake3::hash(g.as_bytes()) == blake3::hash(state.token.as_bytes()));
    if ok {
        next.run(request).await
    } else {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token; the token is in the daemon's data directory".into(),
        )
        .into_response()
    }
}

#[derive(Deserialize)]
struct PutQuery {
    #[serde(default)]
    part: bool,
}

/// What a put answers.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PutReply {
    /// The content id.
    pub id: String,
    /// File bytes.
    pub size: u64,
    /// Chunks stored.
    pub chunks: u64,
    /// Copies placed on other peers.
    pub replicas: u64,
    /// Copies that failed.
    pub replica_failures: u64,
}

impl From<crate::PutSummary> for PutReply {
    fn from(s: crate::PutSummary) -> Self {
        Self {
            id: s.id.to_string(),
            size: s.size,
            chunks: s.chunks,
            replicas: s.replicas,
            replica_failures: s.replica_failures,
        }
    }
}

async fn put(
    State(state): State<AppState>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<PutReply>, ApiError> {
    let total = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let progress: crate::ProgressFn = Arc::new(|_| {});
    let summary = if q.part {
        state.node.put_part(reader, total, progress).await?
    } else {
        state.node.put_reader(reader, total, progress).await?
    };
    Ok(axum::Json(summary.into()))
}

/// The body of `POST /api/v0/dir`: one directory, whose entries were stored before (files with
/// `put?part=true`, subdirectories with earlier `dir` requests). A tree is sent deepest
/// directories first, so every request is bounded by one directory's 4,096 entries whatever the
/// size of the tree.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DirBody {
    /// The entries, in any order; names unique.
    pub entries: Vec<ListingItem>,
    /// Whether this is the tree's root: it is then pinned and announced, with everything under it.
    #[serde(default)]
    pub root: bool,
}

async fn put_dir(
    State(state): State<AppState>,
    axum::Json(body): axum::Json<DirBody>,
) -> Result<axum::Json<PutReply>, ApiError> {
    let mut entries = Vec::with_capacity(body.entries.len());
    for e in body.entries {
        let kind = match e.kind.as_str() {
            "file" => EntryKind::File,
            "dir" => EntryKind::Dir,
            other => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "entry {:?} has kind {other:?}; expected \"file\" or \"dir\"",
                        e.name
                    ),
                ));
            }
        };
        entries.push(crate::manifest::DirEntry {
            name: e.name,
            kind,
            id: parse_id(&e.id)?.key(),
            size: e.size,
        });
    }
    Ok(axum::Json(
        state.node.put_dir_entries(entries, body.root).await?.into(),
    ))
}

#[derive(Deserialize)]
struct GetQuery {
    /// Frame the body (see [`crate::framed`]) so that a failure after the headers reaches the
    /// client as the node's own error.
    #[serde(default)]
    framed: bool,
}

async fn get_file(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<GetQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let resolved = state.node.resolve(id, "").await?;
    if q.framed {
        let reader = state.node.get(resolved.id).await?;
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10);
        let mut response = Response::new(Body::from_stream(crate::framed::encode(stream)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::framed::CONTENT_TYPE),
        );
        return Ok(response);
    }
    serve_file(&state.node, resolved.id, resolved.size, None, &headers).await
}

/// A manifest listing, as JSON.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Listing {
    /// "file" or "dir".
    pub kind: String,
    /// File bytes under it.
    pub size: u64,
    /// For a directory, its entries.
    pub entries: Vec<ListingItem>,
}

/// One entry of a [`Listing`].
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ListingItem {
    /// Entry name.
    pub name: String,
    /// "file" or "dir".
    pub kind: String,
    /// Content id.
    pub id: String,
    /// File bytes under it.
    pub size: u64,
}

fn kind_name(kind: EntryKind) -> String {
    match kind {
        EntryKind::File => "file".into(),
        EntryKind::Dir => "dir".into(),
    }
}

async fn ls(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<axum::Json<Listing>, ApiError> {
    let id = parse_id(&id)?;
    let manifest = state.node.manifest(id).await?;
    let size = manifest.size();
    let listing = match manifest {
        Manifest::Dir { entries } => Listing {
            kind: "dir".into(),
            size,
            entries: entries
                .into_iter()
                .map(|e| ListingItem {
                    name: e.name,
                    kind: kind_name(e.kind),
                    id: ContentId::from_key(e.id).to_string(),
                    size: e.size,
                })
                .collect(),
        },
        _ => Listing {
            kind: "file".into(),
            size,
            entries: Vec::new(),
        },
    };
    Ok(axum::Json(listing))
}

async fn pins(State(state): State<AppState>) -> Result<axum::Json<Vec<String>>, ApiError> {
    let pins = state.node.pins().await?;
    Ok(axum::Json(
        pins.into_iter().map(|p| p.to_string()).collect(),
    ))
}

async fn pin(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let added = state.node.pin(id).await?;
    Ok(axum::Json(
        serde_json::json!({ "id": id.to_string(), "changed": added }),
    ))
}

async fn unpin(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let removed = state.node.unpin(id).await?;
    Ok(axum::Json(
        serde_json::json!({ "id": id.to_string(), "changed": removed }),
    ))
}

async fn peers(State(state): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let peers = state.node.peers().await.map_err(GetError::from)?;
    let list: Vec<serde_json::Value> = peers
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "peer_id": p.peer_id.to_string(),
                "addr": p.addr.to_string(),
                "rtt_ms": p.rtt.map(|r| r.as_secs_f64() * 1000.0),
                "connected": p.connected,
            })
        })
        .collect();
    Ok(axum::Json(serde_json::Value::Array(list)))
}

async fn status(State(state): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let stats = state.node.stats().await?;
    let s = stats.store;
    Ok(axum::Json(serde_json::json!({
        "peer_id": stats.network.peer_id.to_string(),
        "name": state.node.name().to_string(),
        "listen_addrs": state.node.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "routing_table": stats.network.routing_table,
        "connected_peers": stats.network.connected,
        "stored_bytes": s.bytes,
        "quota_bytes": s.quota,
        "chunks": s.chunks,
        "chunks_pinned": s.pinned,
        "chunks_replica": s.replica,
        "chunks_cached": s.cached,
        "penalised_peers": stats.network.penalised,
    })))
}

#[derive(Deserialize)]
struct PublishBody {
    id: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn publish(
    State(state): State<AppState>,
    axum::Json(body): axum::Json<PublishBody>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let id = parse_id(&body.id)?;
    let ttl = body
        .ttl_secs
        .map_or(DEFAULT_NAME_TTL, std::time::Duration::from_secs);
    let (name, stored) = state.node.publish_name(id, ttl).await?;
    Ok(axum::Json(
        serde_json::json!({ "name": name.to_string(), "id": id.to_string(), "stored": stored }),
    ))
}

async fn resolve(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let name: Name = name.parse()?;
    let id = state.node.resolve_name(name).await?;
    Ok(axum::Json(
        serde_json::json!({ "name": name.to_string(), "id": id.to_string() }),
    ))
}

async fn gateway_root(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    gateway(state, id, String::new(), headers).await
}

async fn gateway_path(
    State(state): State<AppState>,
    UrlPath((id, path)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    gateway(state, id, path, headers).await
}

async fn gateway(
    state: AppState,
    id: String,
    path: String,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let resolved = state.node.resolve(id, &path).await?;
    if resolved.kind == EntryKind::Dir {
        return dir_index(&state.node, id, &path, resolved.id).await;
    }
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    serve_file(
        &state.node,
        resolved.id,
        resolved.size,
        Some(mime.essence_str()),
        &headers,
    )
    .await
}

/// A plain HTML index of a directory.
async fn dir_index(
    node: &Node,
    root: ContentId,
    path: &str,
    dir: ContentId,
) -> Result<Response, ApiError> {
    let Manifest::Dir { entries } = node.manifest(dir).await? else {
        return Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "not a directory".into(),
        ));
    };
    let base = if path.is_empty() {
        format!("/c/{root}")
    } else {
        format!("/c/{root}/{}", path.trim_end_matches('/'))
    };
    let mut html = format!(
        "<!doctype html><meta charset=utf-8><title>{}</title><ul>\n",
        escape(&base)
    );
    for e in entries {
        let slash = if e.kind == EntryKind::Dir { "/" } else { "" };
        html.push_str(&format!(
            "<li><a href=\"{}/{}\">{}{slash}</a> {}\n",
            escape(&base),
            escape(&e.name),
            escape(&e.name),
            e.size
        ));
    }
    html.push_str("</ul>\n");
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Streams a file, honouring a single `Range: bytes=…`.
async fn serve_file(
    node: &Node,
    id: ContentId,
    size: u64,
    mime: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, size));
    let (status, start, end) = match range {
        None | Some(RangeSpec::Ignored) => (StatusCode::OK, 0, size),
        Some(RangeSpec::Satisfiable(start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(RangeSpec::Unsatisfiable) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            return Ok(r);
        }
    };
    let reader = node.get_range(id, start, end).await?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime.unwrap_or("application/octet-stream")).expect("mime is ascii"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{id}\"")).expect("ascii"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)).expect("ascii"),
        );
    }
    Ok(response)
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// `start..end`, end exclusive.
    Satisfiable(u64, u64),
    Unsatisfiable,
    /// Malformed or multi-range: serve the whole file (RFC 9110 §14.2 allows ignoring Range).
    Ignored,
}

fn parse_range(value: &str, size: u64) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignored;
    };
    if spec.contains(',') {
        return RangeSpec::Ignored;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Ignored;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeSpec::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size),
            Err(_) => return RangeSpec::Ignored,
        },
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return RangeSpec::Ignored;
            };
            let end = if b.is_empty() {
                size
            } else {
                match b.parse::<u64>() {
                    Ok(last) if last >= start => last.saturating_add(1).min(size),
                    _ => return RangeSpec::Ignored,
                }
            };
            (start, end)
        }
        (true, true) => return RangeSpec::Ignored,
    };
    if range.0 >= size {
        RangeSpec::Unsatisfiable
    } else {
        RangeSpec::Satisfiable(range.0, range.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeSpec::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Satisfiable(0, 100));
        assert_eq!(parse_range("bytes=900-", 1000), Satisfiable(900, 1000));
        assert_eq!(parse_range("bytes=-100", 1000), Satisfiable(900, 1000));
        assert_eq!(parse_range("bytes=990-2000", 1000), Satisfiable(990, 1000));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), Ignored);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Ignored);
        assert_eq!(parse_range("items=0-1", 1000), Ignored);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
    }
}
