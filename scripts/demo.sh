#!/bin/sh
# scripts/demo.sh - what `make demo` runs; also works standalone from anywhere:
#   sh scripts/demo.sh
# Installs missing packages (as root), builds ./pop3d, creates a demo user
# (demo/demo) and an mbox with three messages in a temporary directory, and
# serves POP3 on 127.0.0.1:$DEMO_PORT (default 1100) through
# systemd-socket-activate until Ctrl-C. The temporary directory is removed on
# exit. POSIX sh.
set -eu

cd "$(dirname "$0")/.."
PORT=${DEMO_PORT:-1100}
case $PORT in
''|*[!0-9]*) echo "demo.sh: DEMO_PORT must be a port number" >&2; exit 2 ;;
esac

sh scripts/deps.sh
${MAKE:-make}

DIR=$(mktemp -d "${TMPDIR:-/tmp}/pop3d-demo.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
# Ctrl-C is how the demo is stopped: it ends the server below, then this
# script says "stopped" and exits 0. (Before the server runs, it just ends.)
trap 'exit 130' INT
trap 'exit 143' TERM HUP
case $DIR in
*:*) echo "demo.sh: temporary directory $DIR contains ':'; set TMPDIR" >&2; exit 1 ;;
esac

# The mbox lives in a directory of the demo user's own, like a home: pop3d
# creates the delivery agents' dotlock <mbox>.lock beside it as that user.
mkdir "$DIR/mail"
MBOX=$DIR/mail/demo.mbox
USERS=$DIR/passwd
LOCKS=$DIR/locks

cat > "$MBOX" <<'MBOX'
From alice@example.org Mon Nov 24 09:12:44 2025
Return-Path: <alice@example.org>
Received: from mail.example.org (mail.example.org [192.0.2.25])
    by mx.example.net (Postfix) with ESMTPS id 4F2A81C0042
    for <demo@example.net>; Mon, 24 Nov 2025 09:12:44 +0000 (UTC)
Date: Mon, 24 Nov 2025 10:12:40 +0100
From: Alice Example <alice@example.org>
To: demo@example.net
Subject: Welcome to pop3d
Message-ID: <20251124091240.GA1234@mail.example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello,

this is the first message in the demo maildrop. Fetch it, delete it,
quit, and it is gone from the mbox; quit without deleting and it stays.

Alice

From bob@example.com Tue Nov 25 14:03:10 2025
Return-Path: <bob@example.com>
Received: from smtp.example.com (smtp.example.com [198.51.100.7])
    by mx.example.net (Postfix) with ESMTPS id 9B7E31C0051
    for <demo@example.net>; Tue, 25 Nov 2025 14:03:10 +0000 (UTC)
Date: Tue, 25 Nov 2025 09:03:05 -0500
From: Bob Example <bob@example.com>
To: demo@example.net
Subject: Lines that need care
Message-ID: <5f1c2e0a-77d3-4c1e-9a51-0b3e2f8d6c11@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

A line that starts with a dot follows; POP3 dot-stuffs it on the wire:
.signature
>From a quoted "From " line in the mbox, shown as stored.

Bob

From noreply@lists.example.org Wed Nov 26 07:45:31 2025
Return-Path: <noreply@lists.example.org>
Received: from lists.example.org (lists.example.org [203.0.113.40])
    by mx.example.net (Postfix) with ESMTP id 1D0C41C0063
    for <demo@example.net>; Wed, 26 Nov 2025 07:45:31 +0000 (UTC)
Date: Wed, 26 Nov 2025 07:45:30 +0000
From: Example Announce <noreply@lists.example.org>
To: demo@example.net
Subject: [announce] Maintenance window on Saturday
Message-ID: <announce.20251126074530.42@lists.example.org>
List-Id: <announce.lists.example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

The mail servers will be restarted on Saturday between 02:00 and 03:00 UTC.
No action is needed.
MBOX

if [ "$(id -u)" -eq 0 ]; then
	# pop3d refuses uid/gid 0 and, as root, becomes the user's uid/gid
	# before it opens the maildrop: give the mail directory and the mbox to
	# nobody/nogroup and let that uid traverse the temporary directory.
	ids=65534:65534
	chown "$ids" "$DIR/mail" "$MBOX"
	chmod 0711 "$DIR"
else
	ids=$(id -u):$(id -g)
fi
chmod 0600 "$MBOX"
(umask 077 && printf 'demo:{PLAIN}demo:%s:Demo User:%s\n' "$ids" "$MBOX" > "$USERS")
chmod 0600 "$USERS"
mkdir -m 0700 "$LOCKS"

cat <<EOT

pop3d demo
  user file  $USERS   (user "demo", password "demo", uid:gid $ids)
  maildrop   $MBOX   (3 messages)
  locks      $LOCKS

Serving POP3 on 127.0.0.1:$PORT. Try it from another terminal:

  curl pop3://demo:demo@127.0.0.1:$PORT/            # LIST
  curl pop3://demo:demo@127.0.0.1:$PORT/1           # RETR 1
  curl -X UIDL pop3://demo:demo@127.0.0.1:$PORT/    # any command

  python3 -c 'import poplib; p = poplib.POP3("127.0.0.1", $PORT); p.user("demo"); p.pass_("demo"); print(p.stat()); print(p.uidl()[1]); print(b"\n".join(p.retr(2)[1]).decode()); p.quit()'

  nc -C 127.0.0.1 $PORT       # or: telnet 127.0.0.1 $PORT   (type CAPA, USER demo, PASS demo, LIST, QUIT)

Or without a socket, over a pipe (as $(id -un 2>/dev/null || id -u)):

  printf 'CAPA\r\nUSER demo\r\nPASS demo\r\nSTAT\r\nQUIT\r\n' | ./pop3d -f $USERS -l $LOCKS

Log lines appear below (-e). Press Ctrl-C to stop; $DIR is then removed.

EOT

# From a terminal the server runs as a job of its own (set -m): Ctrl-C then
# goes to it alone, not to make, which would otherwise die of it (status 130)
# whatever this script does. Without a terminal, a SIGINT to the process group
# ends the server and is noted here.
stopped=
trap 'stopped=1' INT
[ -t 0 ] && [ -t 2 ] && set -m 2>/dev/null
set +e
systemd-socket-activate --accept --inetd -l "127.0.0.1:$PORT" \
	"$PWD/pop3d" -e -D 1 -f "$USERS" -l "$LOCKS"
st=$?
set -e
set +m 2>/dev/null || true
[ "$st" -eq 130 ] && stopped=1         # the server ended by SIGINT (Ctrl-C)
if [ -n "$stopped" ]; then
	echo "stopped"
	exit 0
fi
echo "demo.sh: systemd-socket-activate exited with status $st" \
    "(port $PORT in use? try DEMO_PORT=1110 make demo)" >&2
exit "$st"
