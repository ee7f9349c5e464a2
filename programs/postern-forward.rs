//! postern-forward ADDRESS...: queue the message on fd 0, with $DTLINE in front,
//! to the addresses, with envelope sender $NEWSENDER (qmail's forward(1)).

use postern::deliver::helpers;
use postern::os::home::Home;

const PROGRAM: &str = "postern-forward";

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    let targets: Vec<String> = std::env::args().skip(1).collect();
    let home = Home::from_env();
    match helpers::message().and_then(|mut m| helpers::forward(&home, &mut m, &targets)) {
        Ok(v) => helpers::finish(v),
        Err(e) => helpers::fail(PROGRAM, &e),
    }
}
