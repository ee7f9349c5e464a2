# The programs a home's bin/ holds; sourced by scripts/instance and scripts/install.
PROGRAMS="postern-queue postern-queued postern-start postern-send postern-lspawn postern-local
postern-forward postern-preline postern-condredirect postern-bouncesaying postern-except
postern-vacation postern-inject postern-sendmail postern-admin
postern-listen postern-smtpd postern-popup postern-auth postern-pop3d
postern-rspawn postern-remote"
