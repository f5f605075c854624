//! The command line as users and consumers meet it: exit codes, stdout vs
//! stderr, messages. (Option semantics are unit-tested in `conf::cli`.)

mod common;

use std::process::Command;

fn out(bin: &str, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin).args(args).output().expect("run binary");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn version_and_help_go_to_stdout_and_exit_zero() {
    for bin in [common::pasta(), common::passt()] {
        let name = if bin.ends_with("pasta") {
            "pasta"
        } else {
            "passt"
        };
        let (code, stdout, _) = out(bin, &["--version"]);
        assert_eq!(code, 0);
        assert!(stdout.starts_with(name), "version line: {stdout}");
        let (code, stdout, _) = out(bin, &["--help"]);
        assert_eq!(code, 0);
        assert!(stdout.contains("--mtu"), "help: {stdout}");
        let (code, stdout, _) = out(bin, &["-h"]);
        assert_eq!(code, 0);
        assert!(!stdout.is_empty());
    }
}

#[test]
fn rootlesskit_probe_exits_zero() {
    let (code, stdout, _) = out(common::pasta(), &["--host-lo-to-ns-lo", "--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("pasta"));
    // Options before --version are still validated.
    let (code, _, stderr) = out(common::pasta(), &["--mtu", "70000", "--version"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("70000"), "{stderr}");
}

#[test]
fn bad_usage_is_reported_on_stderr_with_status_one() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("pasta", &["--no-such-option"], "no-such-option"),
        ("pasta", &["-m", "70000"], "70000"),
        ("pasta", &["--address", "not-an-address"], "not-an-address"),
        ("passt", &["--config-net"], "pasta"),
        ("passt", &["somecommand"], "somecommand"),
        ("pasta", &["--netns"], "netns"),
    ];
    for (prog, args, needle) in cases {
        let bin = if *prog == "pasta" {
            common::pasta()
        } else {
            common::passt()
        };
        let (code, stdout, stderr) = out(bin, args);
        assert_eq!(code, 1, "{prog} {args:?}: stdout {stdout} stderr {stderr}");
        assert!(
            stderr.contains(needle),
            "{prog} {args:?}: stderr should mention {needle}: {stderr}"
        );
    }
}

#[test]
fn mode_comes_from_argv0() {
    // A pasta symlink to passt is pasta, as distributions install it.
    let dir = std::env::temp_dir().join(format!("passt-rs-argv0-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let link = dir.join("pasta");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(common::passt(), &link).unwrap();
    let (code, stdout, _) = out(link.to_str().unwrap(), &["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("pasta"), "{stdout}");
    let other = dir.join("whatever");
    let _ = std::fs::remove_file(&other);
    std::os::unix::fs::symlink(common::passt(), &other).unwrap();
    let (code, _, stderr) = out(other.to_str().unwrap(), &["--version"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("passt or pasta"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
