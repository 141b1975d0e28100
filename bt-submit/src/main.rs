//! The `bt-submit` command; everything it does is in the library (`lib.rs`).

fn main() -> std::process::ExitCode {
    bt_submit::main()
}
