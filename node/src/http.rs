//! The daemon's HTTP API and read-only gateway (axum), served on loopback.
//!
//! - `/api/v0/...` needs `Authorization: Bearer <token>`; the token is random per daemon start
//!   and written, with the API address, into the data directory (mode 0600) so that the command
//!   line finds both (see [`ApiFiles`]).
//! - `/c/<id>` and `/c/<id>/path/in/dir` serve content to anyone who can reach the loopback
//!   address, with Content-Type (from the name, else sniffed from the first bytes),
//!   Content-Length, range requests, an ETag (`If-None-Match` gives a 304) and
//!   `Cache-Control: immutable`; `/n/<name>` and `/n/<name>/path/in/dir` serve what a name
//!   points at, resolved at each request (a name that does not resolve is a 404), to be
//!   revalidated each time. A directory's URL ends in `/` (a redirect adds it); it serves its
//!   `index.html`, or else a listing with breadcrumbs, sizes and types. Everything the gateway
//!   serves carries [`GATEWAY_CSP`] (a sandbox: an opaque origin that cannot read the API or the
//!   web UI's token) and `X-Content-Type-Options: nosniff`. A file that cannot start fails with
//!   its error status before any header; one that fails later aborts the connection short of
//!   its Content-Length.
//! - Every request whose `Host` is a DNS name other than `localhost` is refused (403), against
//!   DNS rebinding; IP addresses pass.
//!
//! | method and path | does |
//! |---|---|
//! | `POST /api/v0/put[?part=true]` | body streamed into a put; `part` stores a file of a directory put |
//! | `POST /api/v0/uploads`, `DELETE /api/v0/uploads/<n>` | starts a directory put ([`UploadReply`], whose id its parts and directories carry; a failed piece or the root ends it), or abandons one |
//! | `POST /api/v0/dir` | JSON [`DirBody`]: one directory of stored entries (deepest first); `root` pins the tree |
//! | `GET /api/v0/get/<id>[?framed=true]` | file bytes, streamed; `Range` supported; `framed` wraps them in [`crate::framed`] frames so a failure midway arrives as the node's error |
//! | `GET /api/v0/ls/<id>` | the manifest: kind, size, entries |
//! | `GET /api/v0/count/<id>` | [`FileCount`]: files a get of it writes (refused past the limit) |
//! | `GET /api/v0/pins`, `POST/DELETE /api/v0/pins/<id>` | pins |
//! | `GET /api/v0/peers`, `GET /api/v0/status` | peers, status (with repair figures) |
//! | `GET /api/v0/health/<id>` | [`crate::Health`]: verified live copies of each chunk on other peers, with `min`, `median` and `at_risk` |
//! | `POST /api/v0/gc` `{"dry_run": bool, "keep_bytes": n}` | removes cached chunks beyond `keep_bytes` (default 0), oldest first; [`crate::store::GcReport`] |
//! | `POST /api/v0/names` [`PublishBody`], `GET /api/v0/names/<name>` | publish a name under a key ([`PublishReply`]), resolve a name ([`NameReply`]) |
//! | `GET /api/v0/keys`, `POST/DELETE /api/v0/keys/<key>` | the node's named keys, create or remove one ([`KeyReply`]; `self` cannot be removed) |
//! | `GET /api/v0/resolve/<id or name>[/path]` | [`ResolvedReply`]: the content a path leads to, its name resolved first |
//!
//! Errors from every route, unknown routes and malformed requests included, are JSON
//! `{"error": "…"}` ([`crate::api::ErrorReply`]) with a fitting status code: 4xx for a client's
//! mistake, 5xx for the node's. Every request and reply body is a type of [`crate::api`], which
//! its [`crate::api::Client`] shares, so the two cannot drift apart.
//!
//! The server is an accept loop over hyper rather than `axum::serve`, because a client must not
//! be able to starve it: measured, 20,000 half-sent request headers made `status` and the
//! gateway time out, and one such connection blocked a graceful shutdown for ever. So every
//! connection has [`HEADER_READ_TIMEOUT`] to send each request header (idle keep-alive
//! connections included), at most [`MAX_CONNECTIONS`] are open, and shutdown waits at most
//! [`SHUTDOWN_GRACE`] for open connections before dropping them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{StreamExt, TryStreamExt};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::api::{
    AddPeerBody, AddPeerReply, DirBody, EndUploadReply, FileCount, GcBody, GcReply, HealthReply,
    InviteReply, KeyReply, Listing, ListingItem, NameReply, PeerReply, PinReply, PublishBody,
    PublishReply, PutReply, RepairReply, ResolvedReply, StatusReply, UploadReply,
};
use crate::error::{GetError, KeyError, NameError, PutError, ResolveError};
use crate::manifest::{EntryKind, Manifest};
use crate::names::{DEFAULT_NAME_TTL, MAX_NAME_TTL, Name};
use crate::{ContentId, ContentPath, KeyName, Node};

/// File in the data directory holding the API address.
pub const API_ADDR_FILE: &str = "api.addr";
/// File in the data directory holding the API token.
pub const API_TOKEN_FILE: &str = "api.token";

/// Connections the server keeps open at once. A connection beyond it is closed at once rather
/// than left in the kernel's accept queue: that queue is first in, first out and its connections
/// count as connected, so a flood of slow connections parked there would hold a later request
/// from the command line behind round after round of header timeouts (with 1,000 queued and 256
/// slots, some 40 s of a request that looks sent). Closed at once, the flood costs nothing past
/// the limit, a request that finds no slot fails at once instead of hanging, and slots are free
/// again at most [`BUSY_HEADER_READ_TIMEOUT`] after the flood stops. 256 is far above what one
/// user's command line, browser and apps open on loopback, and far below the usual 1,024 file
/// descriptors.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a connection has to send a request header, counted from the end of its previous
/// request (or from its start): a half-sent header or an idle keep-alive connection is closed
/// after it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The header timeout of a connection accepted while more than half of [`MAX_CONNECTIONS`] is
/// taken. A client on loopback sends its header within milliseconds, so under a flood of slow
/// connections half the slots turn over every second and a real request still finds one.
pub const BUSY_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// How long shutdown waits for open connections to finish their requests before dropping them,
/// so that a stop (SIGTERM) always ends the daemon promptly.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Largest JSON request body (`/api/v0/dir`, `/api/v0/names`): 8 MiB, so that the largest
/// directory the format allows fits (4,096 entries whose 255-byte names need JSON escaping, up
/// to 6 bytes a byte, with their ids: about 6.9 MB). File uploads to `/api/v0/put` are streamed
/// and not bounded by it.
pub const MAX_JSON_BODY: usize = 8 << 20;
/// How long the accept loop backs off after an accept error (such as running out of file
/// descriptors), so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    uploads: Arc<std::sync::Mutex<Uploads>>,
}

/// Directory uploads in progress (`POST /api/v0/uploads`), each keeping its pieces from
/// eviction until its root arrives; bounded in number and forgotten after [`UPLOAD_IDLE`].
#[derive(Default)]
struct Uploads {
    open: std::collections::HashMap<u64, (crate::Upload, std::time::Instant)>,
    next: u64,
}

/// Directory uploads open at once.
pub const MAX_UPLOADS: usize = 64;
/// An upload that receives nothing for this long is forgotten (its pieces become evictable).
pub const UPLOAD_IDLE: Duration = Duration::from_secs(600);

impl Uploads {
    fn sweep(&mut self) {
        self.open
            .retain(|_, (_, seen)| seen.elapsed() < UPLOAD_IDLE);
    }

    fn begin(&mut self, node: &Node) -> Option<u64> {
        self.sweep();
        if self.open.len() >= MAX_UPLOADS {
            return None;
        }
        let id = self.next;
        self.next += 1;
        self.open
            .insert(id, (node.begin_upload(), std::time::Instant::now()));
        Some(id)
    }

    fn get(&mut self, id: u64) -> Result<crate::Upload, ApiError> {
        self.sweep();
        let (upload, seen) = self.open.get_mut(&id).ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "upload {id} is unknown or expired (idle for more than {} s); start the directory put again",
                    UPLOAD_IDLE.as_secs()
                ),
            )
        })?;
        *seen = std::time::Instant::now();
        Ok(upload.clone())
    }
}

/// The API and gateway routes for `node`, requiring `token` on `/api`.
pub fn router(node: Node, token: &str) -> Router {
    let state = AppState {
        node,
        token: token.into(),
        uploads: Arc::default(),
    };
    let api = Router::new()
        .route("/put", post(put))
        .route("/uploads", post(begin_upload))
        .route("/uploads/{id}", axum::routing::delete(end_upload))
        .route("/dir", post(put_dir))
        .route("/get/{id}", get(get_file))
        .route("/ls/{id}", get(ls))
        .route("/count/{id}", get(count))
        .route("/pins", get(pins))
        .route("/pins/{id}", post(pin).delete(unpin))
        .route("/peers", get(peers).post(add_peer))
        .route("/invite", get(invite))
        .route("/status", get(status))
        .route("/health/{id}", get(health))
        .route("/gc", post(gc))
        .route("/names", post(publish))
        .route("/names/{name}", get(resolve))
        .route("/keys", get(keys))
        .route("/keys/{key}", post(generate_key).delete(remove_key))
        .route("/resolve/{root}", get(resolve_path))
        .route("/resolve/{root}/", get(resolve_path))
        .route("/resolve/{root}/{*path}", get(resolve_path_in))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .nest("/api/v0", api)
        .route("/metrics", get(metrics))
        .route(
            "/ui",
            get(|| async { axum::response::Redirect::permanent("/ui/") }),
        )
        .route("/ui/", get(ui_file))
        .route("/ui/{file}", get(ui_file))
        .route("/c/{id}", get(gateway_root))
        .route("/c/{id}/", get(gateway_root))
        .route("/c/{id}/{*path}", get(gateway_path))
        .route("/n/{name}", get(gateway_name_root))
        .route("/n/{name}/", get(gateway_name_root))
        .route("/n/{name}/{*path}", get(gateway_name_path))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(middleware::from_fn(check_host))
        .with_state(state)
}

/// Serves `router(node, token)` on `listener` until `shutdown` resolves, then stops accepting,
/// asks every open connection to finish its request, and drops those still open after
/// [`SHUTDOWN_GRACE`]. Accept errors (such as running out of file descriptors) are logged and
/// retried, never returned: the API stays up for as long as the daemon runs.
pub fn serve(
    listener: TcpListener,
    node: Node,
    token: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'static {
    let app = router(node, token);
    async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut connections = JoinSet::new();
        let (stop, stopped) = watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            while connections.try_join_next().is_some() {}
            let stream = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        warn!(%e, "cannot accept an API connection; retrying");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                debug!("all {MAX_CONNECTIONS} API connections are taken; closing a new one");
                continue;
            };
            let header_timeout = if slots.available_permits() < MAX_CONNECTIONS / 2 {
                BUSY_HEADER_READ_TIMEOUT
            } else {
                HEADER_READ_TIMEOUT
            };
            connections.spawn(serve_connection(
                stream,
                app.clone(),
                header_timeout,
                stopped.clone(),
                slot,
            ));
        }
        // New connections are refused from here on.
        drop(listener);
        let _ = stop.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                open = connections.len(),
                "dropping API connections still open {} s after the stop",
                SHUTDOWN_GRACE.as_secs()
            );
            connections.shutdown().await;
        }
        Ok(())
    }
}

/// Serves one connection until it ends or, after `stop`, until its request in progress ends.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!(%e, "API connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// An API error: a status and a one-line message.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(crate::api::ErrorReply { error: self.1 })).into_response()
    }
}

impl ApiError {
    /// The error of a get's byte stream (a [`GetError`] inside an I/O error).
    fn from_io(e: std::io::Error) -> Self {
        match e.into_inner().map(|inner| inner.downcast::<GetError>()) {
            Some(Ok(get)) => (*get).into(),
            Some(Err(other)) => ApiError(StatusCode::BAD_GATEWAY, other.to_string()),
            None => ApiError(StatusCode::BAD_GATEWAY, "the get failed".into()),
        }
    }
}

impl From<GetError> for ApiError {
    fn from(e: GetError) -> Self {
        let status = match &e {
            GetError::NotFound(_) | GetError::NoSuchPath { .. } => StatusCode::NOT_FOUND,
            GetError::Unavailable { .. } | GetError::Damaged { .. } => StatusCode::BAD_GATEWAY,
            GetError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            GetError::TooLarge { .. } => StatusCode::INSUFFICIENT_STORAGE,
            GetError::IsDirectory(_)
            | GetError::Manifest { .. }
            | GetError::TooDeep(_)
            | GetError::TooManyFiles { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<PutError> for ApiError {
    fn from(e: PutError) -> Self {
        let status = match &e {
            // The API reads no files: the only input a put reads is the request body.
            PutError::Read { .. } => {
                return ApiError(
                    StatusCode::BAD_REQUEST,
                    "the upload broke off before its end; send it again".into(),
                );
            }
            PutError::BadName(_)
            | PutError::NameTooLong(_)
            | PutError::TooManyEntries(_)
            | PutError::TooDeep(_)
            | PutError::DuplicateName(_)
            | PutError::BadEntry { .. } => StatusCode::BAD_REQUEST,
            PutError::Store(
                crate::store::StoreError::QuotaFull { .. }
                | crate::store::StoreError::DiskFull { .. },
            ) => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        let status = match &e {
            NameError::Malformed(_) | NameError::Ttl(_) => StatusCode::BAD_REQUEST,
            NameError::NotFound(_) => StatusCode::NOT_FOUND,
            NameError::Key(k) => return ApiError::from_key(k, e.to_string()),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        Self::from_key(&e, e.to_string())
    }
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Root(_) | ResolveError::Id(_) => {
                ApiError(StatusCode::BAD_REQUEST, e.to_string())
            }
            ResolveError::Name(e) => e.into(),
            ResolveError::Get(e) => e.into(),
        }
    }
}

impl ApiError {
    /// The status of key error `e`, with `message`.
    fn from_key(e: &KeyError, message: String) -> Self {
        let status = match e {
            KeyError::BadName(_) | KeyError::RemoveSelf => StatusCode::BAD_REQUEST,
            KeyError::Unknown(_) => StatusCode::NOT_FOUND,
            KeyError::Exists(_) | KeyError::TooMany => StatusCode::CONFLICT,
            KeyError::Io { .. } | KeyError::Stopped(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, message)
    }
}

/// What a JSON request body must look like, for the error message when it does not.
trait BodyShape {
    /// A description of the expected body.
    const SHAPE: &'static str;
}

impl BodyShape for DirBody {
    const SHAPE: &'static str = r#"a JSON object {"entries": [{"name": …, "kind": "file" or "dir", "id": "<content id>", "size": …}], "root": <bool>}"#;
}

impl BodyShape for PublishBody {
    const SHAPE: &'static str = r#"a JSON object {"id": "<content id>", "ttl_secs": <optional seconds>, "key": "<optional key name>"}"#;
}

/// `axum::Json` whose rejection is a JSON [`ApiError`] saying what to send.
struct ApiJson<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + BodyShape> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let rejection = match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => return Ok(Self(value)),
            Err(rejection) => rejection,
        };
        let status = rejection.status();
        let message = match &rejection {
            JsonRejection::MissingJsonContentType(_) => format!(
                "the body must be sent with content-type: application/json; send {}",
                T::SHAPE
            ),
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
                format!("the body is larger than {MAX_JSON_BODY} bytes; send a smaller one")
            }
            _ => format!("{}; send {}", one_line(&rejection.body_text()), T::SHAPE),
        };
        Err(ApiError(status, message))
    }
}

/// `axum::extract::Query` whose rejection is a JSON [`ApiError`].
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection @ QueryRejection::FailedToDeserializeQueryString(_)) => Err(ApiError(
                rejection.status(),
                format!(
                    "{}; see the API table for the query parameters of this route",
                    one_line(&rejection.body_text())
                ),
            )),
            Err(rejection) => Err(ApiError(
                rejection.status(),
                one_line(&rejection.body_text()),
            )),
        }
    }
}

/// `axum::extract::Path` whose rejection is a JSON [`ApiError`].
struct ApiPath<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection @ PathRejection::FailedToDeserializePathParams(_)) => Err(ApiError(
                rejection.status(),
                format!(
                    "{}; send the path percent-encoded UTF-8",
                    one_line(&rejection.body_text())
                ),
            )),
            Err(rejection) => Err(ApiError(
                rejection.status(),
                one_line(&rejection.body_text()),
            )),
        }
    }
}

/// A rejection's text as one lowercase line of bounded length: it may quote the client's input.
fn one_line(text: &str) -> String {
    const MAX_CHARS: usize = 300;
    let mut chars = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_CHARS);
    chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {method} {}; see the API table in the cairn-node http docs",
            one_line(uri.path())
        ),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method}; see the API table in the cairn-node http docs",
            one_line(uri.path())
        ),
    )
}

fn parse_id(text: &str) -> Result<ContentId, ApiError> {
    text.parse()
        .map_err(|e: crate::ContentIdError| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
}

/// Refuses a request whose `Host` is a DNS name other than `localhost`: against DNS
/// rebinding, where a web page on a name its owner points at 127.0.0.1 would otherwise read
/// the gateway (and try the API) as its own origin. An IP address, `localhost` and
/// `*.localhost` pass, as does a request without `Host` (not a browser).
async fn check_host(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
    match host {
        Some(host) if !host_allowed(&host) => ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "host {host:?} is not allowed (DNS rebinding protection): open the gateway as 127.0.0.1 or localhost"
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// Whether a `Host` header value (with or without a port) is an IP address or localhost.
pub fn host_allowed(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => {
                return ip.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        },
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
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

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

#[derive(Deserialize)]
struct PutQuery {
    #[serde(default)]
    part: bool,
    /// The directory upload a part belongs to (see `POST /api/v0/uploads`).
    #[serde(default)]
    upload: Option<u64>,
}

async fn begin_upload(State(state): State<AppState>) -> Result<axum::Json<UploadReply>, ApiError> {
    let id = state
        .uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .begin(&state.node)
        .ok_or_else(|| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_UPLOADS} directory uploads are already open; try again when one has finished"),
            )
        })?;
    Ok(axum::Json(UploadReply { upload: id }))
}

async fn end_upload(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
) -> axum::Json<EndUploadReply> {
    let changed = state.end_upload(Some(id));
    axum::Json(EndUploadReply {
        upload: id,
        changed,
    })
}

impl AppState {
    /// Forgets upload `id` (finished, failed or abandoned): its pieces become evictable.
    fn end_upload(&self, id: Option<u64>) -> bool {
        let Some(id) = id else { return false };
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .remove(&id)
            .is_some()
    }
}

/// The upload `id` names, or a new one of its own for a request without one.
fn upload_of(state: &AppState, id: Option<u64>) -> Result<crate::Upload, ApiError> {
    match id {
        Some(id) => state
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id),
        None => Ok(state.node.begin_upload()),
    }
}

async fn put(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PutQuery>,
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
        let upload = upload_of(&state, q.upload)?;
        let part = state.node.put_part(reader, total, progress, &upload).await;
        if part.is_err() {
            // A failed piece fails the upload: it must not go on holding space.
            state.end_upload(q.upload);
        }
        part?
    } else {
        state.node.put_reader(reader, total, progress).await?
    };
    Ok(axum::Json(summary.into()))
}

async fn put_dir(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DirBody>,
) -> Result<axum::Json<PutReply>, ApiError> {
    let (root, upload) = (body.root, body.upload);
    let reply = put_dir_in(&state, body).await;
    // The root ends its upload, and so does a failed piece: it must not go on holding space.
    if root || reply.is_err() {
        state.end_upload(upload);
    }
    reply
}

async fn put_dir_in(state: &AppState, body: DirBody) -> Result<axum::Json<PutReply>, ApiError> {
    let entries = body
        .entries
        .iter()
        .map(ListingItem::entry)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let upload = upload_of(state, body.upload)?;
    let reply = state
        .node
        .put_dir_entries(entries, body.root, &upload)
        .await?;
    Ok(axum::Json(reply.into()))
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
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<GetQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    // The root manifest, read once: what the get streams comes from it.
    let root = state.node.manifest(id).await?;
    if q.framed {
        let reader = state.node.get_range_of(id, root, 0, u64::MAX)?;
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10);
        let mut response = Response::new(Body::from_stream(crate::framed::encode(stream)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::framed::CONTENT_TYPE),
        );
        return Ok(response);
    }
    let size = root.size();
    serve_file(
        &state.node,
        id,
        Some(root),
        size,
        Some("application/octet-stream"),
        &headers,
    )
    .await
}

async fn ls(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<Listing>, ApiError> {
    let id = parse_id(&id)?;
    let manifest = state.node.manifest(id).await?;
    let size = manifest.size();
    let listing = match manifest {
        Manifest::Dir { entries } => Listing {
            kind: "dir".into(),
            size,
            entries: entries.into_iter().map(ListingItem::from).collect(),
        },
        _ => Listing {
            kind: "file".into(),
            size,
            entries: Vec::new(),
        },
    };
    Ok(axum::Json(listing))
}

async fn count(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<FileCount>, ApiError> {
    let id = parse_id(&id)?;
    let files = state.node.count_files(id).await?;
    Ok(axum::Json(FileCount { files }))
}

async fn pins(State(state): State<AppState>) -> Result<axum::Json<Vec<String>>, ApiError> {
    let pins = state.node.pins().await?;
    Ok(axum::Json(
        pins.into_iter().map(|p| p.to_string()).collect(),
    ))
}

async fn pin(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<PinReply>, ApiError> {
    let id = parse_id(&id)?;
    let changed = state.node.pin(id).await?;
    Ok(axum::Json(PinReply {
        id: id.to_string(),
        changed,
    }))
}

async fn unpin(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<PinReply>, ApiError> {
    let id = parse_id(&id)?;
    let changed = state.node.unpin(id).await?;
    Ok(axum::Json(PinReply {
        id: id.to_string(),
        changed,
    }))
}

async fn peers(State(state): State<AppState>) -> Result<axum::Json<Vec<PeerReply>>, ApiError> {
    let peers = state.node.peers().await.map_err(GetError::from)?;
    Ok(axum::Json(peers.into_iter().map(PeerReply::from).collect()))
}

impl BodyShape for AddPeerBody {
    const SHAPE: &'static str = r#"a JSON object {"addr": "<multiaddr ending in /p2p/<peer id>, or an invite (cairninvite1…)>"}"#;
}

/// `POST /api/v0/peers {"addr": MULTIADDR}`: joins the network through that peer now.
async fn add_peer(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AddPeerBody>,
) -> Result<axum::Json<AddPeerReply>, ApiError> {
    let text = body.addr.trim();
    let (joined, what) = if text.starts_with(crate::TICKET_PREFIX) {
        let ticket: crate::Ticket = text
            .parse()
            .map_err(|e: crate::TicketError| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        let what = format!("the invite's node {}", ticket.peer);
        (state.node.join(&ticket).await, what)
    } else {
        let addr: libp2p::Multiaddr = text.parse().map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "'{}' is neither a multiaddr nor an invite; expected one like /ip4/192.0.2.1/udp/5738/quic-v1/p2p/12D3KooW… or cairninvite1…",
                    crate::printable(&text.chars().take(200).collect::<String>())
                ),
            )
        })?;
        (state.node.add_peer(&addr).await, addr.to_string())
    };
    let peers = match joined {
        Ok(n) => n,
        Err(crate::AddPeerError::Stopped(e)) => return Err(GetError::from(e).into()),
        Err(e) => return Err(ApiError(StatusCode::BAD_REQUEST, e.to_string())),
    };
    if peers == 0 {
        return Err(ApiError(
            StatusCode::BAD_GATEWAY,
            format!(
                "no answer from {what}; check that it is running and reachable (a new invite lists its current addresses)"
            ),
        ));
    }
    Ok(axum::Json(AddPeerReply { addr: what, peers }))
}

/// `GET /api/v0/invite`: a ticket to this node (`cairn invite`).
async fn invite(State(state): State<AppState>) -> Result<axum::Json<InviteReply>, ApiError> {
    let ticket = state.node.invite().await.map_err(GetError::from)?;
    Ok(axum::Json(InviteReply {
        ticket: ticket.to_string(),
        peer_id: ticket.peer.to_string(),
        addrs: ticket
            .full_addrs()
            .iter()
            .map(ToString::to_string)
            .collect(),
    }))
}

/// `GET /metrics`: Prometheus text (no token: it says nothing a peer could not learn, and the
/// API listens on loopback only).
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.node.metrics().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn status(State(state): State<AppState>) -> Result<axum::Json<StatusReply>, ApiError> {
    let stats = state.node.stats().await?;
    let (s, n) = (stats.store, stats.network);
    let (bytes_in, bytes_out) = state.node.chunk_traffic();
    let strings = |addrs: &[libp2p::Multiaddr]| addrs.iter().map(ToString::to_string).collect();
    Ok(axum::Json(StatusReply {
        chunk_bytes_received: bytes_in,
        chunk_bytes_sent: bytes_out,
        peer_id: n.peer_id.to_string(),
        name: state.node.name().to_string(),
        listen_addrs: strings(&state.node.addrs()),
        routing_table: n.routing_table,
        connected_peers: n.connected,
        stored_bytes: s.bytes,
        quota_bytes: s.quota,
        chunks: s.chunks,
        chunks_pinned: s.pinned,
        chunks_replica: s.replica,
        chunks_cached: s.cached,
        penalised_peers: n.penalised,
        banned_peers: n.banned,
        replication: n.replication,
        network: n.network,
        rate_limited_requests: n.rate_limited,
        reachability: n.nat.reachability.as_str().to_owned(),
        external_addrs: strings(&n.nat.external_addrs),
        relayed_addrs: strings(&n.nat.relayed_addrs),
        hole_punches: n.nat.hole_punches,
        hole_punch_failures: n.nat.hole_punch_failures,
        repair: RepairReply {
            chunks_responsible: n.repair.responsible,
            chunks_below_target: n.repair.below_target,
            chunks_unaudited: n.repair.unaudited,
            handoffs: n.repair.handoffs,
            copies_sent: n.repair.copies_sent,
            bytes_sent: n.repair_bytes_sent,
            proofs_valid: n.repair.proofs_valid,
            proofs_invalid: n.repair.proofs_invalid,
            released: n.repair.released,
        },
    }))
}

async fn health(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<HealthReply>, ApiError> {
    let id = parse_id(&id)?;
    let h = state.node.health(id).await?;
    Ok(axum::Json(HealthReply {
        at_risk: h.at_risk().cloned().collect(),
        min: h.min(),
        median: h.median(),
        chunks: h.chunks.len(),
        content: h.content,
        replication: h.replication,
        copies: h.chunks,
    }))
}

impl BodyShape for GcBody {
    const SHAPE: &'static str =
        r#"a JSON object {"dry_run": <bool>, "keep_bytes": <bytes of cache to keep>}"#;
}

async fn gc(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<GcBody>,
) -> Result<axum::Json<GcReply>, ApiError> {
    let r = state.node.gc(body.keep_bytes, body.dry_run).await?;
    Ok(axum::Json(GcReply {
        dry_run: body.dry_run,
        chunks: r.chunks,
        bytes: r.bytes,
        cache_left_bytes: r.cache_left,
    }))
}

async fn publish(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PublishBody>,
) -> Result<axum::Json<PublishReply>, ApiError> {
    let id = parse_id(&body.id)?;
    // Peers refuse records that claim to live longer than their maximum (7 days by default).
    let max = MAX_NAME_TTL.as_secs();
    let ttl = match body.ttl_secs {
        None => DEFAULT_NAME_TTL,
        Some(secs @ 1..) if secs <= max => Duration::from_secs(secs),
        Some(secs) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "ttl_secs {secs} is out of range; send 1 to {max} ({} days), or leave it out for {} hours",
                    max / 86_400,
                    DEFAULT_NAME_TTL.as_secs() / 3600
                ),
            ));
        }
    };
    let key: KeyName = match &body.key {
        Some(text) => text.parse()?,
        None => KeyName::self_key(),
    };
    let (name, stored) = state.node.publish_name_under(&key, id, ttl).await?;
    Ok(axum::Json(PublishReply {
        name: name.to_string(),
        key: key.to_string(),
        id: id.to_string(),
        stored,
    }))
}

async fn resolve(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<NameReply>, ApiError> {
    let name: Name = name.parse()?;
    let id = state.node.resolve_name(name).await?;
    Ok(axum::Json(NameReply {
        name: name.to_string(),
        id: id.to_string(),
    }))
}

async fn keys(State(state): State<AppState>) -> axum::Json<Vec<KeyReply>> {
    axum::Json(state.node.keys().into_iter().map(KeyReply::from).collect())
}

async fn generate_key(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<(StatusCode, axum::Json<KeyReply>), ApiError> {
    let key: KeyName = key.parse()?;
    let made = state.node.generate_key(&key).await?;
    Ok((StatusCode::CREATED, axum::Json(made.into())))
}

async fn remove_key(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<axum::Json<KeyReply>, ApiError> {
    let key: KeyName = key.parse()?;
    Ok(axum::Json(state.node.remove_key(&key).await?.into()))
}

async fn resolve_path(
    State(state): State<AppState>,
    ApiPath(root): ApiPath<String>,
) -> Result<axum::Json<ResolvedReply>, ApiError> {
    resolve_content_path(&state, root, String::new()).await
}

async fn resolve_path_in(
    State(state): State<AppState>,
    ApiPath((root, path)): ApiPath<(String, String)>,
) -> Result<axum::Json<ResolvedReply>, ApiError> {
    resolve_content_path(&state, root, path).await
}

async fn resolve_content_path(
    state: &AppState,
    root: String,
    path: String,
) -> Result<axum::Json<ResolvedReply>, ApiError> {
    let target: ContentPath = format!("{root}/{path}").parse()?;
    let resolved = state.node.resolve_path(&target).await?;
    Ok(axum::Json(ResolvedReply {
        id: resolved.id.to_string(),
        kind: crate::api::kind_name(resolved.kind).into(),
        size: resolved.size,
    }))
}

async fn gateway_root(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    gateway(state, id, String::new(), uri, headers).await
}

async fn gateway_path(
    State(state): State<AppState>,
    ApiPath((id, path)): ApiPath<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    gateway(state, id, path, uri, headers).await
}

async fn gateway_name_root(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    gateway_name(state, name, String::new(), uri, headers).await
}

async fn gateway_name_path(
    State(state): State<AppState>,
    ApiPath((name, path)): ApiPath<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    gateway_name(state, name, path, uri, headers).await
}

async fn gateway(
    state: AppState,
    id: String,
    path: String,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let at = Place {
        base: format!("/c/{id}"),
        immutable: true,
        uri,
    };
    serve_path(&state, &at, id, &path, &headers).await
}

/// `/n/<name>[/path]`: the name resolved now, then served as `/c/` serves its content.
async fn gateway_name(
    state: AppState,
    name: String,
    path: String,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name: Name = name.parse()?;
    let id = state.node.resolve_name(name).await?;
    let at = Place {
        base: format!("/n/{name}"),
        immutable: false,
        uri,
    };
    serve_path(&state, &at, id, &path, &headers).await
}

/// The web UI's files, in the binary: (name, type, bytes).
const UI_FILES: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("ui/style.css"),
    ),
];

/// The web UI's Content-Security-Policy: its own scripts, styles and API only.
const UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// `/ui/[file]`: the web UI. Its files hold no secret and are served to anyone; what it shows
/// comes from the API, with the token `cairn ui` passes in the URL's fragment.
async fn ui_file(path: Option<axum::extract::Path<String>>) -> Response {
    let name = path.map_or_else(|| "index.html".to_owned(), |p| p.0);
    let Some((_, mime, body)) = UI_FILES.iter().find(|(n, _, _)| *n == name) else {
        return ApiError(StatusCode::NOT_FOUND, format!("no web UI file {name:?}")).into_response();
    };
    let mut r = (*body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(UI_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Where a gateway request is: its root (`/c/<id>` or `/n/<name>`, which links in a listing
/// start with), whether what it serves can never change (content ids) or may (names), and the
/// URI as asked.
struct Place {
    base: String,
    immutable: bool,
    uri: Uri,
}

/// The Content-Security-Policy of everything the gateway serves: content comes from strangers,
/// so a page runs in a sandbox with an opaque origin (scripts run, but cannot read the
/// daemon's origin: not the web UI's token, not the API), as a cross-origin page would.
pub const GATEWAY_CSP: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/// Cache-Control under `/c/`: a content id names the same bytes for ever.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache-Control under `/n/`: a name may point elsewhere at any time; ask again (the ETag
/// makes that a 304 while it points at the same content).
const REVALIDATE: &str = "no-cache";

/// Serves `path` in content `id`: a file's bytes; a directory's `index.html` if it has one;
/// otherwise a listing of the directory.
async fn serve_path(
    state: &AppState,
    at: &Place,
    id: ContentId,
    path: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let resolved = state.node.resolve(id, path).await?;
    let mut response = if resolved.kind == EntryKind::Dir {
        if !at.uri.path().ends_with('/') {
            // Relative links in a directory's pages resolve against its URL: it ends in `/`.
            let location = match at.uri.query() {
                Some(q) => format!("{}/?{q}", at.uri.path()),
                None => format!("{}/", at.uri.path()),
            };
            let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
            r.headers_mut().insert(
                header::LOCATION,
                HeaderValue::from_str(&location).map_err(|_| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        "the path is not valid in a URL".into(),
                    )
                })?,
            );
            return Ok(r);
        }
        let Manifest::Dir { entries } = state.node.manifest(resolved.id).await? else {
            return Err(ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "not a directory".into(),
            ));
        };
        match entries
            .iter()
            .find(|e| e.name == "index.html" && e.kind == EntryKind::File)
        {
            Some(index) => {
                serve_file(
                    &state.node,
                    ContentId::from_key(index.id),
                    None,
                    index.size,
                    Some("text/html; charset=utf-8"),
                    headers,
                )
                .await?
            }
            None => {
                let etag = format!("\"{}.listing\"", resolved.id);
                if not_modified(headers, &etag) {
                    unchanged(&etag)
                } else {
                    let mut r = dir_listing(at, path, &entries);
                    r.headers_mut()
                        .insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
                    r
                }
            }
        }
    } else {
        let name = path.rsplit('/').next().unwrap_or_default();
        serve_file(
            &state.node,
            resolved.id,
            None,
            resolved.size,
            mime_of_name(name).as_deref(),
            headers,
        )
        .await?
    };
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if at.immutable { IMMUTABLE } else { REVALIDATE }),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(GATEWAY_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// The type a file name says, if its extension is known; text types say UTF-8.
fn mime_of_name(name: &str) -> Option<String> {
    let mime = mime_guess::from_path(name).first()?;
    Some(if mime.type_() == mime_guess::mime::TEXT {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_owned()
    })
}

/// The type of a file with no telling name, from its first bytes: a known binary format by
/// its magic number, HTML or other UTF-8 text, or else bytes.
pub fn sniff(head: &[u8]) -> &'static str {
    if let Some(kind) = infer::get(head)
        && kind.matcher_type() != infer::MatcherType::Text
    {
        return kind.mime_type();
    }
    let utf8 = match std::str::from_utf8(head) {
        Ok(_) => true,
        // Cut in the middle of a character at the end of the sample: still text.
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    if !utf8 || head.contains(&0) {
        return "application/octet-stream";
    }
    let start: Vec<u8> = head
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(16)
        .map(u8::to_ascii_lowercase)
        .collect();
    if start.starts_with(b"<!doctype html") || start.starts_with(b"<html") {
        "text/html; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// Whether `If-None-Match` names `etag` (or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// A 304 for `etag`.
fn unchanged(etag: &str) -> Response {
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    r.headers_mut()
        .insert(header::ETAG, HeaderValue::from_str(etag).expect("ascii"));
    r
}

/// A readable HTML listing of a directory at `path`: breadcrumbs, a link up, and each entry's
/// name, size and type.
fn dir_listing(at: &Place, path: &str, entries: &[crate::manifest::DirEntry]) -> Response {
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let short = |s: &str| -> String {
        match s.char_indices().nth(20) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s.to_owned(),
        }
    };
    // Breadcrumbs: the root, then each directory on the way, each a link but the last.
    let mut crumbs = Vec::new();
    let mut href = at.base.clone();
    let root_label = short(at.base.trim_start_matches('/'));
    let mut labels = vec![root_label];
    labels.extend(segments.iter().map(|s| (*s).to_owned()));
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            href.push('/');
            href.push_str(&utf8_percent_encode(segments[i - 1], PATH_SEGMENT).to_string());
        }
        if i + 1 == labels.len() {
            crumbs.push(format!("<span>{}</span>", escape(label)));
        } else {
            crumbs.push(format!(
                "<a href=\"{}/\">{}</a>",
                escape(&href),
                escape(label)
            ));
        }
    }
    let title = if path.is_empty() {
        at.base.clone()
    } else {
        format!("{}/{path}", at.base)
    };
    let mut html = format!(
        "<!doctype html>\n<html lang=en><meta charset=utf-8>\n\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{LISTING_CSS}</style>\n\
         <body><nav>{crumbs}</nav>\n<table>\n\
         <thead><tr><th>Name</th><th class=size>Size</th><th>Type</th></tr></thead>\n<tbody>\n",
        title = escape(&title),
        crumbs = crumbs.join(" / "),
    );
    if !segments.is_empty() {
        html.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td>up</td></tr>\n");
    }
    for e in entries {
        let (slash, kind) = match e.kind {
            EntryKind::Dir => ("/", "directory".to_owned()),
            EntryKind::File => (
                "",
                mime_guess::from_path(&e.name)
                    .first()
                    .map(|m| m.essence_str().to_owned())
                    .unwrap_or_else(|| "file".into()),
            ),
        };
        html.push_str(&format!(
            "<tr><td><a href=\"{href}{slash}\">{name}{slash}</a></td>\
             <td class=size title=\"{bytes} bytes\">{size}</td><td>{kind}</td></tr>\n",
            href = utf8_percent_encode(&e.name, PATH_SEGMENT),
            name = escape(&e.name),
            bytes = e.size,
            size = human_size(e.size),
            kind = escape(&kind),
        ));
    }
    html.push_str(&format!(
        "</tbody></table>\n<footer>{} {}</footer>\n</body></html>\n",
        entries.len(),
        if entries.len() == 1 {
            "entry"
        } else {
            "entries"
        }
    ));
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

const LISTING_CSS: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}\
nav{font-size:1.1rem;margin-bottom:1rem;word-break:break-all}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd}th{color:#666;font-weight:600}\
td.size,th.size{text-align:right;white-space:nowrap}a{color:#0657b8;text-decoration:none}a:hover{text-decoration:underline}\
footer{color:#888;margin-top:1rem;font-size:.9rem}@media(prefers-color-scheme:dark){body{background:#111;color:#ddd}a{color:#6cb0ff}th,td{border-color:#333}}";

/// Bytes as people read them: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// What is percent-encoded in a link's path segment: all but RFC 3986's unreserved characters,
/// so that names with `#`, `?`, `%`, spaces or non-ASCII letters give working links.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Streams the file `id` of `size` bytes (its root manifest `root`, if read already),
/// honouring a single `Range: bytes=…`.
async fn serve_file(
    node: &Node,
    id: ContentId,
    root: Option<Manifest>,
    size: u64,
    mime: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{id}\"");
    if not_modified(headers, &etag) {
        return Ok(unchanged(&etag));
    }
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
    let reader = match root {
        Some(root) => node.get_range_of(id, root, start, end)?,
        None => node.get_range(id, start, end).await?,
    };
    let mut stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10);
    // The first bytes come before the headers: a get that cannot start (no holder of the first
    // chunk) fails with its own status rather than a 200 cut short. A failure later aborts the
    // connection before the declared length, which no client takes for a complete file.
    let first = if end > start {
        match stream.next().await {
            Some(Ok(bytes)) => Some(bytes),
            Some(Err(e)) => return Err(ApiError::from_io(e)),
            None => None,
        }
    } else {
        None
    };
    let sniffed;
    let mime = match mime {
        Some(m) => m,
        None if start == 0 => sniff(first.as_deref().unwrap_or_default()),
        None => {
            // A range from the middle: the type is in the file's first bytes.
            let mut head = node.get_range(id, 0, size.min(SNIFF_BYTES)).await?;
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut head, &mut bytes)
                .await
                .map_err(ApiError::from_io)?;
            sniffed = sniff(&bytes);
            sniffed
        }
    };
    let body = Body::from_stream(futures::stream::iter(first.map(Ok)).chain(stream));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime).expect("mime is ascii"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)).expect("ascii"),
        );
    }
    Ok(response)
}

/// How much of a file's start [`sniff`] looks at.
const SNIFF_BYTES: u64 = 4096;

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

    #[test]
    fn hosts_that_pass_the_rebinding_check() {
        for ok in [
            "127.0.0.1:5737",
            "127.0.0.1",
            "localhost:8080",
            "LOCALHOST",
            "app.localhost:1",
            "[::1]:5737",
            "[::1]",
            "192.0.2.7:80",
            "localhost.",
        ] {
            assert!(host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:5737",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[::1]x",
            "127.0.0.1:abc",
            "",
        ] {
            assert!(!host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff(b"  <!DOCTYPE html><p>hi"), "text/html; charset=utf-8");
        assert_eq!(sniff("héllo wörld".as_bytes()), "text/plain; charset=utf-8");
        // Cut inside a character: still text.
        assert_eq!(sniff(&"é".as_bytes()[..1]), "text/plain; charset=utf-8");
        assert_eq!(sniff(b"\0\x01\x02\xff"), "application/octet-stream");
        assert_eq!(sniff(b""), "text/plain; charset=utf-8");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(10 << 20), "10 MiB");
        assert_eq!(human_size(u64::MAX), "16 EiB");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn a_broken_upload_is_the_clients_error() {
        let e = PutError::Read {
            path: "-".into(),
            source: std::io::Error::other("connection reset"),
        };
        let ApiError(status, message) = e.into();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.contains("send it again"), "{message}");
    }

    #[test]
    fn rejection_text_becomes_one_bounded_lowercase_line() {
        assert_eq!(
            one_line("Failed to parse\nthe body"),
            "failed to parse the body"
        );
        assert_eq!(one_line(&"É".repeat(1000)).chars().count(), 300);
        assert!(one_line(&"É".repeat(1000)).starts_with("éÉ"));
        assert_eq!(one_line(""), "");
    }
}
