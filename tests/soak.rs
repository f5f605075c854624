//! Bounded memory over time, the CI version of `bench/soak.sh`: the same
//! script, the same rule, for 64 s with pasta and passt side by side
//! (passt on the stream socket through `tests/tap_relay.py`): mixed
//! traffic (bulk TCP each way, short connections, UDP, DNS), RSS and open
//! descriptors sampled every second, and after a 40 s warm-up the largest
//! of the last 12 s may exceed the largest of the 12 s before by at most
//! 1 MiB of RSS and 8 descriptors. The warm-up is that long because both
//! translators' RSS takes one step of 1.5 to 2 MiB at about 30 to 35 s
//! (then stays flat over the 10 minutes of `bench/soak.sh`: see
//! bench/README.md). The script also fails if the load does not run to
//! its end without an error, so a stalled translator cannot pass by not
//! growing.

mod common;

use common::*;
use std::process::Command;

#[test]
fn rss_and_descriptors_stay_bounded() {
    require_root();
    let tmp = std::env::temp_dir().join(format!("passt-rs-soak-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let out = tmp.join("soak.md");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/soak.sh");
    let o = run(Command::new("timeout")
        .args(["300", "bash", script])
        .env("SOAK_SECONDS", "64")
        .env("SOAK_WARMUP", "40")
        .env("SOAK_SKIP_BUILD", "1")
        .env("SOAK_PASTA", pasta())
        .env("SOAK_PASST", passt())
        .env("SOAK_OUT", &out));
    let summary = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("{summary}");
    assert!(
        o.status.success(),
        "bench/soak.sh failed ({}):\n{}\n{}\n{summary}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for mode in ["pasta", "passt"] {
        let row = summary
            .lines()
            .find(|l| l.starts_with(&format!("| {mode} |")))
            .unwrap_or_else(|| panic!("no {mode} row in:\n{summary}"));
        assert!(row.ends_with("| pass |"), "{row}");
    }
}
