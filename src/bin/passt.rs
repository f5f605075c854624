//! Entry point. `passt` and `pasta` are the same program: the mode comes
//! from the basename of argv[0], so a `pasta -> passt` symlink works too.

#![forbid(unsafe_code)]

fn main() {
    std::process::exit(passt_rs::main());
}
