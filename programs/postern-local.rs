//! postern-local (being written).
fn main() {
    eprintln!("postern-local: not built yet");
    std::process::exit(111);
}
