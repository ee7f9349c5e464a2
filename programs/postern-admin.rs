//! postern-admin (being written).
fn main() {
    eprintln!("postern-admin: not built yet");
    std::process::exit(111);
}
