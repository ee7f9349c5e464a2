//! postern-send (being written).
fn main() {
    eprintln!("postern-send: not built yet");
    std::process::exit(111);
}
