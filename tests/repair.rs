//! `passt-repair`, the privileged helper of live migration, against a
//! passt side written in Python from upstream's protocol: one signed
//! command byte with up to 253 TCP sockets attached, `TCP_REPAIR` set on
//! each (checked with `getsockopt` on our own copies), the byte echoed;
//! a bad command or a message without sockets ends it with status 1, end
//! of file with 0; given a directory, it waits for the `.repair` socket.

mod common;

use common::tcp::python;
use common::*;
use serde_json::Value;
use std::process::Command;

const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/repair_helper.py");

fn helper() -> &'static str {
    env!("CARGO_BIN_EXE_passt-repair")
}

fn session(args: &[&str]) -> Value {
    let out = must(
        Command::new("timeout")
            .args(["60", python(), HELPER, helper()])
            .args(args),
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn check_common(v: &Value) {
    assert_eq!(v["on_echo"], serde_json::json!([1]), "{v}");
    assert_eq!(v["on"], serde_json::json!([1, 1, 0]), "peer untouched: {v}");
    assert_eq!(v["off_echo"], serde_json::json!([0]), "{v}");
    assert_eq!(v["off_no_wp_echo"], serde_json::json!([-1]), "{v}");
    assert_eq!(v["off"], serde_json::json!([0, 0]), "{v}");
    assert_eq!(v["many_echo"], serde_json::json!([1]), "{v}");
    assert_eq!(v["many_on"], 253, "{v}");
}

#[test]
fn commands_set_tcp_repair_and_eof_ends_cleanly() {
    require_root();
    let tb = Testbed::new();
    let v = session(&[&tb.path("r.sock").display().to_string(), "eof"]);
    check_common(&v);
    assert_eq!(v["status"], 0, "{v}");
}

#[test]
fn bad_command_or_no_socket_ends_with_an_error() {
    require_root();
    let tb = Testbed::new();
    let v = session(&[&tb.path("r.sock").display().to_string(), "bad-command"]);
    check_common(&v);
    assert_eq!(v["bad_echo"], serde_json::json!([]), "no echo: {v}");
    assert_eq!(v["status"], 1, "{v}");
    assert!(
        v["stderr"].as_str().unwrap().contains("unknown command 5"),
        "{v}"
    );

    let v = session(&[&tb.path("r2.sock").display().to_string(), "no-socket"]);
    assert_eq!(v["status"], 1, "{v}");
    assert!(
        v["stderr"].as_str().unwrap().contains("without a socket"),
        "{v}"
    );
}

#[test]
fn waits_for_the_socket_in_a_directory() {
    require_root();
    let tb = Testbed::new();
    let dir = tb.path("d");
    std::fs::create_dir(&dir).unwrap();
    let sock = dir.join("passt.socket.repair");
    let v = session(&[
        &sock.display().to_string(),
        "--dir",
        &dir.display().to_string(),
        "eof",
    ]);
    check_common(&v);
    assert_eq!(v["status"], 0, "{v}");
}

#[test]
fn usage_errors() {
    let o = run(&mut Command::new(helper()));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Usage:"));
    let o = run(Command::new(helper()).arg("/nonexistent/x.repair"));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("can't connect"));
}
