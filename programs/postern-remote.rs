//! postern-remote (being written).
fn main() {
    eprintln!("postern-remote: not built yet");
    std::process::exit(111);
}
