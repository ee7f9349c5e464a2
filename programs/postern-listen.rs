//! postern-listen (being written).
fn main() {
    eprintln!("postern-listen: not built yet");
    std::process::exit(111);
}
