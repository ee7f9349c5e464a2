//! postern-pop3d (being written).
fn main() {
    eprintln!("postern-pop3d: not built yet");
    std::process::exit(111);
}
