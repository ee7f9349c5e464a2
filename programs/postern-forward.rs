//! postern-forward ADDRESS...: queue the message on fd 0, with $DTLINE in front,
//! to the addresses, with envelope sender $NEWSENDER (qmail's forward(1)).

use postern::deliver::helpers;
use postern::deliver::local::seekable;
use postern::error::Classify;
use postern::os::home::Home;

fn main() {
    let targets: Vec<String> = std::env::args().skip(1).collect();
    let home = Home::from_env();
    let result = seekable(postern::os::sys::protocol_fd(0))
        .map_err(helpers::HelperError::Message)
        .and_then(|mut m| helpers::forward(&home, &mut m, &targets));
    match result {
        Ok(v) => std::process::exit(v.code),
        Err(e) => {
            eprintln!("postern-forward: {e}");
            std::process::exit(e.kind().exit_code());
        }
    }
}
