//! Issue 9's survivors test: 15 `cairn daemon` processes on 127.0.0.1, 10 files put through one
//! of them, then the publisher and 7 others killed with SIGKILL (no goodbye, no time for
//! repair). The test reads the survivors' chunk stores to work out which files still have a live,
//! verified copy of every chunk, and asserts that each of those comes back byte-identical through
//! `cairn get` on a survivor (on two survivors for some), and that each other file fails with
//! exit code 1 and a one-line error naming a chunk that no survivor holds.
//!
//! Seeded: the data, the publisher, which daemons die and which survivors read all come from the
//! seed, and every problem found is reported with its seed. All seeds run before the test fails,
//! so one run shows every seed's outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_node::Manifest;
use cairn_tests::random_bytes;
use tokio::process::Child;
use tokio::time::timeout;

use super::{STEP, cairn, stderr, stdout};

/// Daemons in the network.
const NODES: usize = 15;
/// Files put through the publisher.
const FILES: usize = 10;
/// Daemons killed besides the publisher.
const OTHERS_KILLED: usize = 7;
/// The seeds run, one network each, and how each chooses who dies.
const SEEDS: [(u64, Victims); 3] = [
    (9001, Victims::Random),
    (9007, Victims::HoldersOfADataChunk),
    (9003, Victims::HoldersOfARootManifest),
];
/// Longest a single `cairn get` may take before it counts as hung.
const GET_BOUND: Duration = Duration::from_secs(60);
/// Longest the routing tables may take to hold every other daemon after the last one started.
const CONVERGE_BOUND: Duration = Duration::from_secs(30);

/// How a seed picks the 7 daemons killed besides the publisher.
///
/// With the default replication of 5, a random 8 of 15 take every copy of some chunk in only a
/// few seeds, so two of the seeds aim: they kill every holder of one seeded chunk (and random
/// others up to 7), so that both halves of the assertion — files that come back and files that
/// must fail naming a lost chunk — are exercised in every run.
#[derive(Clone, Copy, Debug)]
enum Victims {
    /// 7 daemons drawn at random.
    Random,
    /// Every holder of one data chunk of a seeded file, then random others.
    HoldersOfADataChunk,
    /// Every holder of a seeded file's root manifest, then random others.
    HoldersOfARootManifest,
}

impl Victims {
    /// The name `CAIRN_SURVIVORS_SEEDS` knows it by.
    fn name(self) -> &'static str {
        match self {
            Victims::Random => "random",
            Victims::HoldersOfADataChunk => "chunk",
            Victims::HoldersOfARootManifest => "root",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_with_a_live_copy_of_each_chunk_comes_back_and_the_others_name_a_lost_chunk() {
    let mut problems = Vec::new();
    for (seed, victims) in seeds() {
        let started = Instant::now();
        let found = one_network(seed, victims).await;
        eprintln!(
            "seed {seed}: {} problem(s) in {:.1} s",
            found.len(),
            started.elapsed().as_secs_f64()
        );
        let replay = format!("CAIRN_SURVIVORS_SEEDS={seed}:{}", victims.name());
        problems.extend(
            found
                .into_iter()
                .map(|p| format!("seed {seed} (replay with {replay}): {p}")),
        );
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// [`SEEDS`], or the runs named in `CAIRN_SURVIVORS_SEEDS` (`SEED:random`, `SEED:chunk` or
/// `SEED:root`, separated by spaces), to replay one seed.
fn seeds() -> Vec<(u64, Victims)> {
    let Ok(list) = std::env::var("CAIRN_SURVIVORS_SEEDS") else {
        return SEEDS.to_vec();
    };
    list.split_whitespace()
        .map(|run| {
            let (seed, kind) = run.split_once(':').unwrap_or((run, "random"));
            let victims = [
                Victims::Random,
                Victims::HoldersOfADataChunk,
                Victims::HoldersOfARootManifest,
            ]
            .into_iter()
            .find(|v| v.name() == kind)
            .unwrap_or_else(|| {
                panic!("CAIRN_SURVIVORS_SEEDS: {kind} is not random, chunk or root")
            });
            (
                seed.parse()
                    .expect("CAIRN_SURVIVORS_SEEDS: a seed is a number"),
                victims,
            )
        })
        .collect()
}

/// One seeded run; returns what went wrong, one line (or paragraph) per problem.
async fn one_network(seed: u64, victims: Victims) -> Vec<String> {
    let mut rng = SplitMix(seed);
    let root = tempfile::tempdir().unwrap();

    // The network: daemon 0 first, every other one bootstrapping from it.
    let mut daemons: Vec<Option<Daemon>> = Vec::with_capacity(NODES);
    let mut dirs = Vec::with_capacity(NODES);
    let mut bootstrap = None;
    for i in 0..NODES {
        let dir = root.path().join(format!("node{i}"));
        write_identity(&dir, seed, i);
        let d = Daemon::start(&dir, bootstrap.as_deref()).await;
        bootstrap.get_or_insert_with(|| d.addr.clone());
        dirs.push(dir);
        daemons.push(Some(d));
    }
    await_routing(&dirs).await;

    // The files, through the publisher.
    let publisher = rng.below(NODES);
    let mut files = Vec::with_capacity(FILES);
    for f in 0..FILES {
        let len = (1 << 20) + rng.below(2 << 20);
        let data = random_bytes(len, seed * 1000 + f as u64);
        let input = root.path().join(format!("file{f}.bin"));
        std::fs::write(&input, &data).unwrap();
        let put = bounded(&dirs[publisher], &["put", input.to_str().unwrap()], STEP)
            .await
            .expect("a put finishes in time");
        assert!(
            put.status.success(),
            "seed {seed}: put of file {f} failed: {}",
            stderr(&put)
        );
        let id = stdout(&put);
        assert!(id.starts_with("cairn1"), "seed {seed}: put printed {id}");
        files.push((id, data));
    }

    // SIGKILL the publisher and 7 others at once, and wait for them to be gone.
    let mut killed = vec![publisher];
    let target = match victims {
        Victims::Random => None,
        Victims::HoldersOfADataChunk | Victims::HoldersOfARootManifest => {
            let (id, _) = &files[rng.below(FILES)];
            let root = id.strip_prefix("cairn1").unwrap().to_owned();
            let chunk = if matches!(victims, Victims::HoldersOfARootManifest) {
                root
            } else {
                let mine = [Store::read(&dirs[publisher])];
                let data: Vec<String> = parts_of(id, &mine)
                    .unwrap_or_else(|e| panic!("seed {seed}: {id}: {e}"))
                    .into_iter()
                    .filter(|c| *c != root)
                    .collect();
                data[rng.below(data.len())].clone()
            };
            Some(chunk)
        }
    };
    if let Some(chunk) = &target {
        for (i, dir) in dirs.iter().enumerate() {
            let file = dir.join("chunks").join(&chunk[..2]).join(chunk);
            if file.exists() && !killed.contains(&i) && killed.len() < 1 + OTHERS_KILLED {
                killed.push(i);
            }
        }
    }
    while killed.len() < 1 + OTHERS_KILLED {
        let i = rng.below(NODES);
        if !killed.contains(&i) {
            killed.push(i);
        }
    }
    for &i in &killed {
        daemons[i].as_mut().unwrap().sigkill();
    }
    for &i in &killed {
        let mut d = daemons[i].take().unwrap();
        timeout(STEP, d.child.wait())
            .await
            .expect("a killed daemon exits")
            .unwrap();
    }
    let survivors: Vec<usize> = (0..NODES).filter(|i| !killed.contains(i)).collect();
    eprintln!(
        "seed {seed}: publisher node{publisher}, killed {killed:?} ({victims:?}, target {:?}), survivors {survivors:?}",
        target.as_ref().map(|c| &c[..12])
    );

    // What each file is made of (from any disk, the dead ones' included: they are not running,
    // but their files say which chunks a content id leads to), and who still holds what.
    let all_stores: Vec<Store> = dirs.iter().map(|d| Store::read(d)).collect();
    let held = |id: &str| -> Vec<usize> {
        survivors
            .iter()
            .copied()
            .filter(|&s| all_stores[s].verified.contains(id))
            .collect()
    };
    let mut plans = Vec::with_capacity(FILES);
    for (f, (id, _)) in files.iter().enumerate() {
        let parts = match parts_of(id, &all_stores) {
            Ok(p) => p,
            Err(e) => panic!("seed {seed}: file {f} ({id}): {e}"),
        };
        let lost: BTreeSet<String> = parts
            .iter()
            .filter(|c| held(c).is_empty())
            .cloned()
            .collect();
        plans.push((parts, lost));
    }
    let retrievable = plans.iter().filter(|(_, lost)| lost.is_empty()).count();
    let mut copies: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (parts, _) in &plans {
        for c in parts {
            let all = all_stores.iter().filter(|s| s.verified.contains(c)).count();
            *copies.entry((all, held(c).len())).or_default() += 1;
        }
    }
    eprintln!("seed {seed}: (copies, live copies) -> chunks: {copies:?}");
    eprintln!("seed {seed}: {retrievable} of {FILES} files have a live copy of every chunk");

    // Every file through a survivor; retrievable ones also through a second one, for half of
    // the files. The gets run at once (on 2 cores, one after another they would take minutes
    // where a lost chunk makes a get wait out its lookups).
    let mut jobs = Vec::new();
    for (f, (_, lost)) in plans.iter().enumerate() {
        let first = survivors[rng.below(survivors.len())];
        jobs.push((f, first));
        if lost.is_empty() && f % 2 == 0 {
            let second = survivors[rng.below(survivors.len() - 1)];
            jobs.push((
                f,
                if second == first {
                    survivors[survivors.len() - 1]
                } else {
                    second
                },
            ));
        }
    }
    let check = |f: usize, reader: usize| {
        let ((id, data), (parts, lost)) = (&files[f], &plans[f]);
        let (dir, out) = (
            &dirs[reader],
            root.path().join(format!("got-{f}-by-{reader}")),
        );
        let (daemons, held) = (&daemons, &held);
        async move {
            let mut problems = Vec::new();
            let started = Instant::now();
            let got = bounded(dir, &["get", id, "-o", out.to_str().unwrap()], GET_BOUND).await;
            let took = started.elapsed().as_secs_f64();
            let what = format!(
                "file {f} ({id}, {} bytes, {} chunks with manifests, lost {}) got by node{reader} in {took:.1} s",
                data.len(),
                parts.len(),
                lost.len()
            );
            eprintln!(
                "seed {seed}: {what}: {}",
                got.as_ref()
                    .map_or("hung".into(), |o| if o.status.success() {
                        "ok".into()
                    } else {
                        stderr(o)
                    })
            );
            let reader_log = || daemons[reader].as_ref().unwrap().log_about(parts, 40);
            let show = |ids: &[String]| -> Vec<String> {
                ids.iter()
                    .map(|h| format!("{}… held by survivors {:?}", &h[..12], held(h)))
                    .collect()
            };
            let Some(got) = got else {
                problems.push(format!(
                    "{what}: did not finish within {GET_BOUND:?}\n  reader log about this file:\n{}",
                    reader_log()
                ));
                return problems;
            };
            let err = stderr(&got);
            let named = hex_ids(&err);
            if lost.is_empty() {
                if !got.status.success() {
                    problems.push(format!(
                        "{what}: failed although every chunk has a live copy: {err}\n  ids in the error: {:?}\n  reader log about this file:\n{}",
                        show(&named),
                        reader_log()
                    ));
                } else if std::fs::read(&out).ok().as_deref() != Some(data.as_slice()) {
                    problems.push(format!("{what}: succeeded but the bytes differ"));
                }
                return problems;
            }
            if got.status.code() != Some(1) {
                problems.push(format!(
                    "{what}: expected exit code 1 with chunks lost, got {:?}: {err}",
                    got.status.code()
                ));
            } else if !err.starts_with("error: ") || err.lines().count() != 1 {
                problems.push(format!(
                    "{what}: the error is not one 'error: …' line: {err}"
                ));
            } else if !named.iter().any(|h| lost.contains(h)) {
                problems.push(format!(
                    "{what}: the error names no lost chunk: {err}\n  ids in it: {:?}\n  lost: {:?}",
                    show(&named),
                    lost.iter().map(|h| &h[..12]).collect::<Vec<_>>()
                ));
            }
            if out.exists() {
                problems.push(format!("{what}: a failed get left {}", out.display()));
            }
            problems
        }
    };
    let mut problems: Vec<String> =
        futures::future::join_all(jobs.iter().map(|&(f, reader)| check(f, reader)))
            .await
            .into_iter()
            .flatten()
            .collect();

    // Nothing lost its last live copy and nothing came back from the dead while the gets ran:
    // the expectations above held for the whole run.
    let after: Vec<Store> = survivors.iter().map(|&s| Store::read(&dirs[s])).collect();
    for (f, (parts, lost)) in plans.iter().enumerate() {
        for c in parts {
            let now = after.iter().any(|s| s.verified.contains(c));
            if now == lost.contains(c) {
                problems.push(format!(
                    "file {f}: chunk {c} was {} the survivors after the kill and {} them after the gets",
                    if lost.contains(c) { "not on" } else { "on" },
                    if now { "is on" } else { "is not on" },
                ));
            }
        }
    }
    drop(daemons);
    problems
}

/// A `cairn daemon` on 127.0.0.1, its stderr collected; killed when dropped.
struct Daemon {
    child: Child,
    /// Its first peer-to-peer address, with `/p2p/<peer id>`.
    addr: String,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Starts a daemon on `dir`, joined through `bootstrap`, and waits (bounded) for its ready
    /// event.
    async fn start(dir: &Path, bootstrap: Option<&str>) -> Self {
        let mut c = cairn();
        c.arg("--json")
            // Debug from the node (the get path), info from the rest, no colour codes.
            .env("RUST_LOG", "info,cairn_node=debug")
            .env("NO_COLOR", "1")
            .arg("--data-dir")
            .arg(dir)
            .args(["daemon", "--api", "127.0.0.1:0"])
            .args([
                "--listen",
                "/ip4/127.0.0.1/udp/0/quic-v1",
                "--local-network",
            ]);
        if let Some(b) = bootstrap {
            c.args(["--bootstrap", b]);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn daemon");
        let stderr = super::collect_stderr(&mut child);
        let ready = super::ready_event(&mut child).await;
        let Some(ready) = ready else {
            panic!(
                "the daemon on {} never got ready; stderr: {}",
                dir.display(),
                stderr.lock().unwrap()
            );
        };
        let addr = ready["addrs"][0]
            .as_str()
            .expect("the ready event lists an address")
            .to_owned();
        let addr = if addr.contains("/p2p/") {
            addr
        } else {
            format!("{addr}/p2p/{}", ready["peer_id"].as_str().unwrap())
        };
        Self {
            child,
            addr,
            stderr,
        }
    }

    /// Kills the process with SIGKILL: no goodbye to its peers, nothing flushed.
    fn sigkill(&mut self) {
        self.child.start_kill().expect("SIGKILL the daemon");
    }

    /// The last `n` lines of its log that mention one of `ids` (by their first 16 hex digits).
    fn log_about(&self, ids: &BTreeSet<String>, n: usize) -> String {
        let log = self.stderr.lock().unwrap();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("fetch:") || ids.iter().any(|id| l.contains(&id[..16])))
            .collect();
        if lines.is_empty() {
            return "    (no line of its log names this file's chunks)".into();
        }
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Gives the daemon on `dir` an identity drawn from the seed, so that its peer id, and with it
/// which chunks it is responsible for, is the same in every run of that seed.
fn write_identity(dir: &Path, seed: u64, i: usize) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let secret = *blake3::Hasher::new()
        .update(b"cairn survivors test identity")
        .update(&seed.to_le_bytes())
        .update(&(i as u64).to_le_bytes())
        .finalize()
        .as_bytes();
    let keypair = ed25519_dalek::SigningKey::from_bytes(&secret).to_keypair_bytes();
    // libp2p's protobuf `PrivateKey { Type = Ed25519 (1), Data = secret ‖ public }`.
    let mut encoded = vec![0x08, 0x01, 0x12, 64];
    encoded.extend_from_slice(&keypair);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(cairn_node::IDENTITY_FILE))
        .and_then(|mut f| f.write_all(&encoded))
        .unwrap();
}

/// Waits (bounded) until every daemon's routing table holds every other daemon, so that the
/// put places copies on a settled network.
async fn await_routing(dirs: &[PathBuf]) {
    let deadline = Instant::now() + CONVERGE_BOUND;
    for dir in dirs {
        loop {
            let o = bounded(dir, &["--json", "status"], STEP)
                .await
                .expect("status answers");
            let known = serde_json::from_str::<serde_json::Value>(&stdout(&o))
                .ok()
                .and_then(|v| v["routing_table"].as_u64())
                .unwrap_or(0);
            if known as usize >= dirs.len() - 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} knows {known} of {} peers after {CONVERGE_BOUND:?}",
                dir.display(),
                dirs.len() - 1
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `cairn --data-dir dir args…`, or `None` if it does not finish within `bound` (it is then
/// killed).
async fn bounded(dir: &Path, args: &[&str], bound: Duration) -> Option<Output> {
    let mut c = cairn();
    c.arg("--data-dir").arg(dir).args(args);
    timeout(bound, c.output())
        .await
        .ok()
        .map(|o| o.expect("cairn runs"))
}

/// The chunk files of one data directory whose bytes hash to their name.
struct Store {
    /// Hex ids of the verified chunks.
    verified: BTreeSet<String>,
    /// Their paths, by hex id.
    paths: BTreeMap<String, PathBuf>,
}

impl Store {
    fn read(dir: &Path) -> Self {
        let mut verified = BTreeSet::new();
        let mut paths = BTreeMap::new();
        let Ok(fans) = std::fs::read_dir(dir.join("chunks")) else {
            return Self { verified, paths };
        };
        for fan in fans.flatten() {
            let Ok(files) = std::fs::read_dir(fan.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                let Ok(bytes) = std::fs::read(file.path()) else {
                    continue;
                };
                if blake3::hash(&bytes).to_hex().as_str() == name {
                    paths.insert(name.clone(), file.path());
                    verified.insert(name);
                }
            }
        }
        Self { verified, paths }
    }
}

/// Every chunk a content id leads to (its manifests and data chunks), as hex, read from any of
/// `stores` that holds a verified copy. Iterative, and remembers what it visited.
fn parts_of(id: &str, stores: &[Store]) -> Result<BTreeSet<String>, String> {
    let root = id
        .strip_prefix("cairn1")
        .ok_or_else(|| format!("{id} is not a content id"))?;
    let mut parts = BTreeSet::new();
    let mut manifests = vec![root.to_owned()];
    while let Some(m) = manifests.pop() {
        if !parts.insert(m.clone()) {
            continue;
        }
        let path = stores
            .iter()
            .find_map(|s| s.paths.get(&m))
            .ok_or_else(|| format!("no disk, live or dead, holds manifest {m}"))?;
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        match Manifest::decode(&bytes).map_err(|e| format!("manifest {m}: {e}"))? {
            Manifest::File { chunks, .. } => {
                parts.extend(chunks.iter().map(|c| format!("{:x}", c.id)));
            }
            Manifest::FileTree { parts: sub, .. } => {
                manifests.extend(sub.iter().map(|p| format!("{:x}", p.id)));
            }
            Manifest::Dir { .. } => return Err(format!("{id} is a directory, not a file")),
        }
    }
    Ok(parts)
}

/// Every run of 64 hex digits in `text`: the chunk and content ids it names.
fn hex_ids(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut run = String::new();
    for ch in text.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_hexdigit() {
            run.push(ch.to_ascii_lowercase());
        } else {
            // "cairn1<64 hex>" reads as a run starting with the "1" of the prefix.
            let digits = if run.len() == 65 && run.starts_with('1') {
                &run[1..]
            } else {
                &run[..]
            };
            if digits.len() == 64 {
                out.push(digits.to_owned());
            }
            run.clear();
        }
    }
    out
}

/// A small seeded generator (SplitMix64) for the test's choices.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` for picking nodes and sizes.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
