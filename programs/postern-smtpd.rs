//! postern-smtpd (being written).
fn main() {
    eprintln!("postern-smtpd: not built yet");
    std::process::exit(111);
}
