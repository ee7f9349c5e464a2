//! Password hashes: new passwords get argon2id; `$6$` and `$5$` SHA-crypt
//! hashes from older systems keep working.

/// An argon2id hash (PHC string, `$argon2id$v=19$...`) with a random salt and the
/// crate's default cost (19 MiB, 2 passes).
pub fn hash_password(pw: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&crate::os::random::bytes(16)).expect("16 bytes make a valid salt");
    argon2::Argon2::default().hash_password(pw.as_bytes(), &salt).expect("default parameters are valid").to_string()
}

/// Whether a stored hash can match any password (false for LOCKED and junk).
pub fn has_password(hash: &str) -> bool {
    hash.starts_with("$argon2id$") || hash.starts_with("$6$") || hash.starts_with("$5$")
}

/// Whether `pw` matches `hash`: argon2id, or `$6$`/`$5$` SHA-crypt from older
/// systems; the libraries compare in constant time. Anything else (e.g. "!" for a
/// locked user) never matches.
pub fn check_password(pw: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2id$") {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        return PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(pw.as_bytes(), &h).is_ok());
    }
    if hash.starts_with("$6$") {
        return sha_crypt::sha512_check(pw, hash).is_ok();
    }
    hash.starts_with("$5$") && sha_crypt::sha256_check(pw, hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let h = hash_password("s3cret pw");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains(':'));
        assert!(has_password(&h));
        assert!(check_password("s3cret pw", &h));
        assert!(!check_password("s3cret pW", &h));
        assert!(!check_password("", super::super::edit::LOCKED));
        assert!(!has_password(super::super::edit::LOCKED));
        assert_ne!(hash_password("x"), hash_password("x"), "salts must differ");
        // Hashes made elsewhere: $6$ and $5$ SHA-crypt (as from mkpasswd/openssl).
        let p6 = sha_crypt::Sha512Params::new(5000).unwrap();
        let six = format!("$6$saltsalt${}", sha_crypt::sha512_crypt_b64(b"old pw", b"saltsalt", &p6).unwrap());
        assert!(check_password("old pw", &six) && !check_password("old pW", &six));
        let p5 = sha_crypt::Sha256Params::new(5000).unwrap();
        let five = format!("$5$saltsalt${}", sha_crypt::sha256_crypt_b64(b"old pw", b"saltsalt", &p5).unwrap());
        assert!(check_password("old pw", &five) && !check_password("x", &five));
        assert!(!check_password("old pw", "$argon2id$garbage"));
    }
}
