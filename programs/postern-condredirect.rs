//! postern-condredirect (being written).
fn main() {
    eprintln!("postern-condredirect: not built yet");
    std::process::exit(111);
}
