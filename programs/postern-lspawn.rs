//! postern-lspawn (being written).
fn main() {
    eprintln!("postern-lspawn: not built yet");
    std::process::exit(111);
}
