//! What the server says of itself: the capability lists (before and after
//! login, kept in one place) and ID.

/// After login (RFC 9051 and the extensions session.rs implements).
pub const SESSION_CAPABILITIES: &str = "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE UIDPLUS MOVE NAMESPACE UNSELECT CHILDREN \
LIST-EXTENDED LIST-STATUS SPECIAL-USE ESEARCH STATUS=SIZE CONDSTORE QRESYNC";

/// Before login: STARTTLS while it is on offer, and LOGINDISABLED until the
/// session is private (RFC 9051 §6.2.3: no passwords in the clear).
pub fn login_capabilities(starttls: bool) -> String {
    let mut c = String::from("IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE");
    if starttls {
        c.push_str(" STARTTLS LOGINDISABLED");
    } else {
        c.push_str(" AUTH=PLAIN");
    }
    c
}

/// The ID response (RFC 2971): who we are, nothing about the host.
pub const ID_RESPONSE: &str = "* ID (\"name\" \"postern\")\r\n";
