# The programs a home's bin/ holds: every [[bin]] in Cargo.toml, the one list of
# programs (the tests and scripts/install read it too). Sourced by
# scripts/instance and scripts/install.
PROGRAMS=$(sed -n 's/^name = "\(postern-[a-z0-9-]*\)"$/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml")
