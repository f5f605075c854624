//! Entry point of `pesto`, the client of passt's and pasta's configuration
//! socket (`-c PATH`): the logic is in the library (`passt_rs::pesto_main`).

#![forbid(unsafe_code)]

fn main() {
    passt_rs::exit(passt_rs::pesto_main());
}
