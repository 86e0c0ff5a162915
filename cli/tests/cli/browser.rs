//! The gateway and the web UI in a real browser: Debian's Chromium, headless, driven over
//! WebDriver by chromedriver (`apt-get install chromium chromium-driver`; `.ci/run` installs
//! them), against a devnet. A site's `index.html` renders and its script runs, a directory
//! without one lists its entries, and the web UI shows the node's peer id and peer count and
//! puts a file through its file picker, which another node's gateway then serves.
//!
//! Screenshots of the UI and the listing are written to `target/tmp/screenshots/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{STEP, assert_ok, run, start, stdout};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Longest a page may take to show what the test waits for.
const PAGE_BOUND: Duration = Duration::from_secs(30);
/// The key WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether the browser is here; `Err` says what is missing, unless `CAIRN_SKIP_BROWSER=1`
/// makes a missing browser skip the test.
fn available() -> Result<bool, String> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return Ok(true);
    }
    let what = format!(
        "this test drives a headless Chromium and needs {} (Debian: apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    if std::env::var("CAIRN_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("skipped (CAIRN_SKIP_BROWSER=1): {what}");
        return Ok(false);
    }
    Err(format!("{what}, or set CAIRN_SKIP_BROWSER=1 to skip it"))
}

/// A chromedriver with one headless Chromium session; both are killed on drop (the driver runs
/// in a process group of its own, with the browsers it starts).
struct Browser {
    child: tokio::process::Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(STEP).build().unwrap();
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                started.elapsed() < PAGE_BOUND,
                "chromedriver never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--no-proxy-server",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }}});
        let reply: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .unwrap();
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {reply}"))
            .to_owned();
        Self {
            child,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    /// One WebDriver command; its `value`, or a panic naming the WebDriver error.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let reply: Value = request.send().await.unwrap().json().await.unwrap();
        if reply["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", reply["value"]);
        }
        reply["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Waits (bounded) until `script` returns something other than null, false or "".
    async fn wait_for(&self, script: &str, what: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.script(script).await;
            if !(v.is_null() || v == false || v == "") {
                return v;
            }
            assert!(
                started.elapsed() < PAGE_BOUND,
                "the page never showed {what}; it holds: {}",
                self.script("return document.body ? document.body.innerText : ''")
                    .await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn send_keys(&self, css: &str, text: &str) {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        let element = found[ELEMENT]
            .as_str()
            .expect("an element reference")
            .to_owned();
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn screenshot(&self, path: &Path) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let bytes = data_encoding::BASE64
            .decode(png.as_str().expect("base64").as_bytes())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    async fn stop(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        self.kill();
        let _ = self.child.wait().await;
    }

    fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_renders_sites_and_listings_and_puts_through_the_web_ui() {
    if !available().unwrap_or_else(|e| panic!("{e}")) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let net = root.path().join("net");
    let devnet = start(
        &["devnet", "--nodes", "3", "--dir", net.to_str().unwrap()],
        "ready",
    )
    .await;
    let node = |i: u32| net.join(format!("node{i}"));
    let api = |i: u32| {
        std::fs::read_to_string(node(i).join("api.addr"))
            .unwrap()
            .trim()
            .to_owned()
    };

    // A site with an index.html whose script changes the page, and a directory without one.
    let site = root.path().join("site");
    std::fs::create_dir_all(site.join("docs")).unwrap();
    std::fs::write(
        site.join("index.html"),
        "<!doctype html><title>a site</title><p id=x>static</p>\
         <script>document.getElementById('x').textContent = 'script ran: ' + (40 + 2);</script>",
    )
    .unwrap();
    std::fs::write(site.join("docs/guide.txt"), "a guide").unwrap();
    std::fs::write(site.join("docs/photo.png"), [0x89, b'P', b'N', b'G']).unwrap();
    let put = run(&node(1), &["put", site.to_str().unwrap()]).await;
    assert_ok(&put);
    let site_id = stdout(&put);

    let browser = Browser::start().await;
    // The site, from another node's gateway: rendered, its script run (inside the sandbox).
    browser
        .goto(&format!("http://{}/c/{site_id}", api(2)))
        .await;
    let text = browser
        .wait_for(
            "const x = document.getElementById('x'); return x && x.textContent.startsWith('script ran') && x.textContent",
            "the site's script output",
        )
        .await;
    assert_eq!(text, "script ran: 42");

    // The directory without index.html: a listing of its entries.
    browser
        .goto(&format!("http://{}/c/{site_id}/docs/", api(2)))
        .await;
    let names = browser
        .wait_for(
            "return Array.from(document.querySelectorAll('tbody a')).map(a => a.textContent).join(',')",
            "the listing's entries",
        )
        .await;
    assert_eq!(names, "../,guide.txt,photo.png");
    browser.screenshot(&screenshots().join("listing.png")).await;

    // The web UI of node 1, with the token `cairn ui --print` gives.
    let ui = run(&node(1), &["ui", "--print"]).await;
    assert_ok(&ui);
    let url = stdout(&ui);
    assert!(url.contains("/ui/#token="), "{url}");
    let status: Value =
        serde_json::from_str(&stdout(&run(&node(1), &["--json", "status"]).await)).unwrap();
    browser.goto(&url).await;
    let shown = browser
        .wait_for(
            "const p = document.getElementById('peer-id').textContent; return p.startsWith('12D3') && p",
            "the node's peer id",
        )
        .await;
    assert_eq!(shown, status["peer_id"]);
    let peers = browser
        .wait_for(
            "const n = document.getElementById('peer-count').textContent; return /^[0-9]+$/.test(n) && n",
            "a peer count",
        )
        .await;
    let peers: u64 = peers.as_str().unwrap().parse().unwrap();
    assert!(peers >= 1, "a node of a 3-node devnet shows {peers} peers");
    // The fragment with the token is gone from the address bar.
    let location = browser.script("return location.href").await;
    assert!(!location.as_str().unwrap().contains("token"), "{location}");

    // Put through the file picker; the id it shows resolves through node 3's gateway.
    let upload = root.path().join("from the browser.bin");
    let data = cairn_tests::random_bytes(300_000, 1401);
    std::fs::write(&upload, &data).unwrap();
    browser
        .script("document.getElementById('file').hidden = false; return true")
        .await;
    browser.send_keys("#file", upload.to_str().unwrap()).await;
    let id = browser
        .wait_for(
            "return document.getElementById('put-result').dataset.id || null",
            "the id of the put",
        )
        .await;
    let id = id.as_str().unwrap().to_owned();
    assert!(id.starts_with("cairn1"), "{id}");
    browser.screenshot(&screenshots().join("ui.png")).await;
    let (code, body, _) = super::http_get(&format!("http://{}/c/{id}", api(3)), None).await;
    assert_eq!(code, 200);
    assert!(
        body == data,
        "node 3's gateway serves other bytes than were put"
    );

    browser.stop().await;
    super::terminate(devnet).await;
}
