//! `sendmail -bv`: what would happen to each recipient, decided by the code that
//! decides it for real: inject's address rewriting (`Identity::qualify`),
//! routing (`config::routing`), who receives a local address (`users::Users`:
//! aliases, users/assign, Unix and virtual users), an alias's values and
//! include files (`deliver::alias`), the dot-qmail file a delivery would read
//! (`deliver::dotqmail`) and smtproutes (`smtp::mx::Routes`). Nothing is sent.

use super::{Identity, InjectError};
use crate::config::control::Control;
use crate::config::routing::{Route, Routing};
use crate::config::settings;
use crate::deliver::dotqmail::{self, Line};
use crate::os::home::Home;
use crate::smtp::mx::{Relay, Routes};
use crate::users::Users;
use std::path::Path;

/// One recipient's verdict: Ok(what happens) or Err(why it would bounce).
pub type Verdict = Result<String, String>;

fn describe(lines: &[Line], home: &Path) -> String {
    // Relative lines are relative to the home; keep a Maildir's final slash.
    let abs = |p: &Path| {
        let s = p.display().to_string();
        if p.is_absolute() {
            s
        } else {
            format!("{}/{}", home.display(), s.strip_prefix("./").unwrap_or(&s))
        }
    };
    lines
        .iter()
        .map(|l| match l {
            Line::Maildir(p) => format!("Maildir {}", abs(p)),
            Line::Mbox(p) => format!("mbox {}", abs(p)),
            Line::Program(c) => format!("program |{c}"),
            Line::Forward(a) => format!("forward to {a}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The verdict for each of `recipients`, in order. Errors are the ones that
/// stop every answer (a control file that does not parse, users/cdb unreadable).
pub fn verify(home: &Home, recipients: &[String]) -> Result<Vec<(String, Verdict)>, InjectError> {
    let id = Identity::from_env(home, None)?;
    let c = Control::new(home);
    let routing = Routing::load(&c)?;
    let mut users = Users::open(home).map_err(InjectError::Users)?;
    let mut routes: Option<Routes> = None;
    let mut out = Vec::new();
    for r in recipients {
        let addr = match id.qualify(r) {
            Ok(a) => a,
            Err(e) => {
                out.push((r.clone(), Err(format!("not an address: {e}"))));
                continue;
            }
        };
        let verdict = match routing.route(&mut |d| users.is_virtual_domain(d), &addr) {
            Route::Remote(a) => {
                let domain = a.domain_lower().unwrap_or_default();
                let table = match &routes {
                    Some(t) => t,
                    None => routes.insert(Routes::load(&c)?),
                };
                let route = table.find(&domain);
                Ok(match route.relay {
                    Relay::Mx => format!("remote: {a} to {domain}'s MX hosts, port {} (postern-remote)", route.port),
                    Relay::Host(h) => format!("remote: {a} by smtproutes to {h}, port {}", route.port),
                    Relay::Ip(ip) => format!("remote: {a} by smtproutes to [{ip}], port {}", route.port),
                })
            }
            Route::Local(a) => local(home, &mut users, &a)?,
        };
        out.push((addr.to_string(), verdict));
    }
    Ok(out)
}

fn local(home: &Home, users: &mut Users, a: &crate::address::Address) -> Result<Verdict, InjectError> {
    let (localpart, domain) = (a.local(), a.domain().unwrap_or(""));
    let Some(t) = users.lookup(localpart, domain).map_err(InjectError::Users)? else {
        return Ok(Err(format!("local: {a}: no mailbox here by that name")));
    };
    if t.alias {
        let name = localpart.to_ascii_lowercase();
        let items = crate::users::aliases::lookup(home, &name).map_err(InjectError::Users)?.unwrap_or_default();
        let me = crate::os::privs::Service::Alias.ids().map(|(u, _)| u).unwrap_or_else(|_| crate::os::sys::effective_uid());
        return Ok(match crate::deliver::alias::expand(&items, me) {
            Ok(lines) => Ok(format!("local: {a}: alias {name} (as {}): {}", t.user, describe(&lines, &t.home))),
            Err(e) => Err(format!("local: {a}: alias {name}: deliveries would be deferred: {e}")),
        });
    }
    if t.uid == 0 {
        return Ok(Err(format!("local: {a}: mail to root is not delivered; set up an alias for root in the aliases file")));
    }
    let who = format!("user {} (uid {}, home {})", t.user, t.uid, t.home.display());
    Ok(match dotqmail::find(&t.home, &t.dash, &t.ext) {
        Ok(Some(f)) if f.contents.is_empty() => {
            Ok(format!("local: {a}: {who} by {} (empty: default delivery): {}", f.path.display(), default(home, &t.home)?))
        }
        Ok(Some(f)) => Ok(format!("local: {a}: {who} by {}: {}", f.path.display(), describe(&dotqmail::parse(&f.contents), &t.home))),
        Ok(None) if t.dash.is_empty() && t.ext.is_empty() => {
            Ok(format!("local: {a}: {who}, default delivery: {}", default(home, &t.home)?))
        }
        Ok(None) => Err(format!("local: {a}: {who} has no .qmail file for the extension {:?}", t.ext)),
        Err(e) => Ok(format!("local: {a}: {who}; its delivery files cannot be checked by you ({e})")),
    })
}

fn default(home: &Home, user_home: &Path) -> Result<String, InjectError> {
    let spec = Control::new(home).list(&settings::DEFAULTDELIVERY)?.join("\n");
    Ok(describe(&dotqmail::parse_default(&spec), user_home))
}
