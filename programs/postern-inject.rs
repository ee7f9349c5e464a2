//! postern-inject (being written).
fn main() {
    eprintln!("postern-inject: not built yet");
    std::process::exit(111);
}
