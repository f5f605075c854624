//! `passt-repair`: sets `TCP_REPAIR` on the sockets passt sends it, for
//! live migration (see `passt_rs::passt_repair_main`).

#![forbid(unsafe_code)]

fn main() {
    passt_rs::exit(passt_rs::passt_repair_main());
}
