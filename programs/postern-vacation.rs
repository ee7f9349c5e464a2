//! postern-vacation (being written).
fn main() {
    eprintln!("postern-vacation: not built yet");
    std::process::exit(111);
}
