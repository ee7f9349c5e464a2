//! postern-sendmail (being written).
fn main() {
    eprintln!("postern-sendmail: not built yet");
    std::process::exit(111);
}
