//! `cairn service install|status|uninstall` against a unit directory of the test's own: the
//! unit file it writes runs a daemon on the data directory it names (run here by hand, since a
//! test machine may have no systemd user session), and uninstall removes it.

use super::{STEP, assert_fails, assert_ok, cairn, start, stdout, terminate};

/// Undoes `systemd_quote`: one ExecStart line of double-quoted arguments.
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart line");
    let mut args = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {}
            '"' => {
                let mut arg = String::new();
                loop {
                    match chars.next().expect("a closing quote") {
                        '"' => break,
                        '\\' => arg.push(chars.next().expect("an escaped character")),
                        '$' | '%' => {
                            let doubled = chars.next();
                            assert!(matches!(doubled, Some('$' | '%')), "{line}");
                            arg.push(doubled.unwrap());
                        }
                        c => arg.push(c),
                    }
                }
                args.push(arg);
            }
            c => panic!("unquoted {c:?} in {line}"),
        }
    }
    args
}

async fn service(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = cairn();
    c.arg("--data-dir").arg(data).arg("service").args(args);
    tokio::time::timeout(STEP, c.output())
        .await
        .expect("cairn service finishes")
        .expect("cairn runs")
}

#[tokio::test]
async fn service_install_writes_a_unit_that_runs_the_daemon_and_uninstall_removes_it() {
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("units");
    let units = units.to_str().unwrap();
    // A space and a percent sign: both must survive systemd's quoting.
    let data = root.path().join("my data 100%");

    let o = service(&data, &["status", "--unit-dir", units]).await;
    assert_ok(&o);
    assert!(stdout(&o).starts_with("not installed"), "{}", stdout(&o));

    let o = service(
        &data,
        &[
            "install",
            "--unit-dir",
            units,
            "--no-start",
            "--daemon-args=--api 127.0.0.1:0 --listen /ip4/127.0.0.1/udp/0/quic-v1",
        ],
    )
    .await;
    assert_ok(&o);
    assert!(
        stdout(&o).contains("not started (--no-start)"),
        "{}",
        stdout(&o)
    );
    let file = root.path().join("units/cairn.service");
    let unit = std::fs::read_to_string(&file).expect("the unit file is written");
    assert!(unit.contains("Restart=on-failure") && unit.contains("WantedBy=default.target"));

    let args = exec_start(&unit);
    assert_eq!(
        std::fs::canonicalize(&args[0]).unwrap(),
        std::fs::canonicalize(env!("CARGO_BIN_EXE_cairn")).unwrap(),
        "the unit runs this cairn binary"
    );
    assert_eq!(args[1..3], ["--data-dir", data.to_str().unwrap()]);
    // What systemd would run: a daemon on that data directory, which then answers.
    let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let daemon = start(&rest, "cairn daemon ready").await;
    let status = super::run(&data, &["--json", "status"]).await;
    assert_ok(&status);
    assert!(stdout(&status).contains("peer_id"), "{}", stdout(&status));
    terminate(daemon).await;

    let o = service(&data, &["status", "--unit-dir", units]).await;
    assert_ok(&o);
    assert!(stdout(&o).starts_with("installed: "), "{}", stdout(&o));

    let o = service(&data, &["uninstall", "--unit-dir", units]).await;
    assert_ok(&o);
    assert!(!file.exists(), "uninstall removes the unit file");
    let o = service(&data, &["uninstall", "--unit-dir", units]).await;
    assert_fails(&o, "no cairn service is installed");
}
