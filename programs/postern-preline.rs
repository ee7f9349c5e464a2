//! postern-preline (being written).
fn main() {
    eprintln!("postern-preline: not built yet");
    std::process::exit(111);
}
