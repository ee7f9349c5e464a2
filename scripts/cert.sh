# make_cert CONTROL NAME: a self-signed certificate for NAME (and localhost) in
# CONTROL/servercert.pem with its key in CONTROL/serverkey.pem, where
# postern-smtpd and postern-popup look for them (lib/net/tls.rs), so STARTTLS,
# STLS, AUTH and the implicit-TLS ports work from the first start. The key is
# readable by the network daemons' group (postern-d) when run as root. Without
# openssl, or when it fails, it says so and leaves no half certificate: TLS is
# then not offered. Sourced by scripts/instance and scripts/install.
make_cert() { # CONTROL NAME
  local who
  who=$(basename "$0")
  command -v openssl >/dev/null || { echo "$who: openssl not found; no certificate made, so TLS will not be offered" >&2; return 0; }
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$2" \
    -addext "subjectAltName=DNS:$2,DNS:localhost,IP:127.0.0.1,IP:::1" \
    -keyout "$1/serverkey.pem" -out "$1/servercert.pem" 2>/dev/null ||
    { echo "$who: openssl could not make a certificate; TLS will not be offered" >&2; rm -f "$1"/server*.pem; return 0; }
  chmod 644 "$1/servercert.pem"
  chmod 600 "$1/serverkey.pem"
  if [ "$(id -u)" = 0 ]; then chgrp postern-d "$1/serverkey.pem"; chmod 640 "$1/serverkey.pem"; fi
}
