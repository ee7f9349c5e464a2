//! postern-auth (being written).
fn main() {
    eprintln!("postern-auth: not built yet");
    std::process::exit(111);
}
