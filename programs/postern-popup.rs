//! postern-popup (being written).
fn main() {
    eprintln!("postern-popup: not built yet");
    std::process::exit(111);
}
