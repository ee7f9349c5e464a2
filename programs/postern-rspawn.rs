//! postern-rspawn (being written).
fn main() {
    eprintln!("postern-rspawn: not built yet");
    std::process::exit(111);
}
