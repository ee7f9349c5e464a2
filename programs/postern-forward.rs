//! postern-forward (being written).
fn main() {
    eprintln!("postern-forward: not built yet");
    std::process::exit(111);
}
