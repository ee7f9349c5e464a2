//! postern-bouncesaying (being written).
fn main() {
    eprintln!("postern-bouncesaying: not built yet");
    std::process::exit(111);
}
