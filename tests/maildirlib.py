"""Independent Maildir model for the pop3d integration tests.

Nothing here looks at the server.  It names message files the way real
delivery agents do, lays out Maildirs, reads their state back, and computes
what a POP3 client must see, from the file names and contents alone:

- order: by the number before the first "." of the name (numerically), then
  by the rest of the unique name (octet by octet); new/ or cur/, mtime and
  directory order do not matter;
- unique name: everything before the info, which starts at the first ":",
  or at a ";" or "!" followed by "2,";
- UIDL: the unique name, or the lowercase hex MD5 of it when it is longer
  than 70 octets or has an octet outside 0x21-0x7E;
- size: a ",W=<n>" field of the unique name (Dovecot's size with CRLF line
  ends, which counts no final newline) plus 2 when the file does not end
  with a newline (pop3d supplies one); otherwise as for mbox
  (mboxlib.delivered: CRLF line ends, a stored CRLF not doubled, a missing
  final newline supplied).  ",S=" is never the POP3 size.

Names are str; octets that are not UTF-8 are carried as surrogate escapes
(os.fsencode gives the file name's real octets back).
"""

import hashlib
import os
import re

import mboxlib as mb

HOST = "mail.example.org"
BASE_TIME = 1764244800          # 2025-11-27 12:00:00 UTC
SUBDIRS = ("new", "cur", "tmp")


# ---------------------------------------------------------------- names

def dovecot_new(t, usec, pid, host=HOST):
    """Dovecot LDA/LMTP in new/ (without size fields)."""
    return "%d.M%dP%d.%s" % (t, usec, pid, host)


def dovecot_vsize(raw):
    """Dovecot's W=: the size with CRLF line ends, no final newline added."""
    return len(mb.delivered(raw)) - (2 if raw and not raw.endswith(b"\n") else 0)


def dovecot_cur(t, usec, pid, raw, flags="", host=HOST, vsize=None):
    """Dovecot in cur/: S=<stored size>,W=<size with CRLF line ends>:2,flags."""
    if vsize is None:
        vsize = dovecot_vsize(raw)
    return "%d.M%dP%d.%s,S=%d,W=%d:2,%s" % (t, usec, pid, host, len(raw), vsize, flags)


def postfix(t, dev, ino, usec, host=HOST):
    """Postfix local(8) (and qmail-style) TIME.V<dev hex>I<inode hex>M<usec>.host."""
    return "%d.V%xI%xM%d.%s" % (t, dev, ino, usec, host)


def qmail_classic(t, pid, host=HOST):
    """Old qmail/maildrop TIME.PID.host."""
    return "%d.%d.%s" % (t, pid, host)


def unique(name):
    return re.split(r":|[;!](?=2,)", name, maxsplit=1)[0]


def octets(name):
    return os.fsencode(name)


def uidl(name):
    u = octets(unique(name))
    if 1 <= len(u) <= 70 and all(0x21 <= c <= 0x7E for c in u):
        return u.decode("ascii")
    return hashlib.md5(u).hexdigest()


def order_key(name):
    u = octets(unique(name))
    m = re.match(rb"[0-9]*", u)
    return (int(m.group() or b"0"), u[m.end():])


def w_size(name):
    """The ,W=<n> of the unique name, or None."""
    m = re.search(r",W=([0-9]+)(?=,|$)", unique(name))
    return int(m.group(1)) if m else None


def pop3_size(name, raw):
    w = w_size(name)
    if w is None:
        return len(mb.delivered(raw))
    return w + (2 if raw and not raw.endswith(b"\n") else 0)


def layout(raws, base=BASE_TIME, host=HOST):
    """[(sub, name)] for raws, in the model's order, the naming styles of
    several delivery agents mixed, new/ and cur/ mixed.  Messages come in
    pairs with the same delivery time, so the second sort key matters too."""
    out = []
    for k, raw in enumerate(raws):
        t = base + (k // 2) * 37
        style = k % 6
        if style == 0:          # Dovecot, already read by an IMAP client
            out.append(("cur", dovecot_cur(t, 100000 + k, 2000 + k, raw, "S", host)))
        elif style == 1:        # Postfix, unread (".V" sorts after ".M")
            out.append(("new", postfix(t, 0x801, 0x1a2b00 + k, 300000 + k, host)))
        elif style == 2:        # Dovecot, unread: "M10..." sorts before "M9..."
            out.append(("new", dovecot_new(t, 10, 3000 + k, host)))
        elif style == 3:        # Dovecot, flagged and replied, not yet seen
            out.append(("cur", dovecot_cur(t, 9, 3000 + k, raw, "FR", host)))
        elif style == 4:        # qmail classic, host with an escaped ':' (\072)
            out.append(("new", qmail_classic(t, 4000 + k, "mx\\072b.example.org")))
        else:                   # Postfix, in cur/ with an empty info
            out.append(("cur", postfix(t, 0x802, 0x3c4d00 + k, 500000 + k, host) + ":2,"))
    keys = [order_key(n) for _, n in out]
    assert keys == sorted(keys) and len(set(keys)) == len(keys), "model: layout not in order"
    return out


# ---------------------------------------------------------------- a Maildir on disk

class Maildir:
    """A Maildir at path (with or without the trailing "/"), owned by uid/gid
    when given (tests running as root)."""

    def __init__(self, path, uid=None, gid=None):
        self.path = path
        self.root = path.rstrip("/")
        self.uid, self.gid = uid, gid

    def _own(self, p):
        if self.uid is not None:
            os.chown(p, self.uid, self.gid)

    def create(self, subs=SUBDIRS, mode=0o700):
        for sub in ("",) + tuple(subs):
            d = os.path.join(self.root, sub)
            os.makedirs(d, exist_ok=True)
            os.chmod(d, mode)
            self._own(d)
        return self

    def exists(self):
        return os.path.lexists(self.root)

    def file(self, sub, name):
        return os.path.join(self.root, sub, name)

    def put(self, sub, name, data, mtime=None, mode=0o600):
        """Deliver like an MDA: write in tmp/, then rename into place."""
        tmp = self.file("tmp", "%s.writing" % unique(name))
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        self._own(tmp)
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        dst = self.file(sub, name)
        os.rename(tmp, dst)
        return dst

    def write(self, raws, base=BASE_TIME):
        """Lay out raws (mixed names); files created in reverse order with
        mtimes decreasing, so neither directory order nor mtime is the order.
        Returns [(sub, name)] in order."""
        self.create()
        names = layout(raws, base)
        for k in reversed(range(len(raws))):
            sub, name = names[k]
            self.put(sub, name, raws[k], mtime=base + 100000 - k)
        return names

    def listing(self, sub):
        try:
            return sorted(os.listdir(self.file(sub, "")))
        except FileNotFoundError:
            return []

    def state(self):
        """{unique: [(sub, name, data)]} of every message file (not tmp/,
        not dot-files)."""
        out = {}
        for sub in ("new", "cur"):
            for name in self.listing(sub):
                if name.startswith("."):
                    continue
                with open(self.file(sub, name), "rb") as f:
                    data = f.read()
                out.setdefault(unique(name), []).append((sub, name, data))
        return out

    def snapshot(self):
        """Everything in new/, cur/ and tmp/, names and contents."""
        out = []
        for sub in SUBDIRS:
            for name in self.listing(sub):
                with open(self.file(sub, name), "rb") as f:
                    out.append((sub, name, f.read()))
        return out

    def ordered(self):
        """[(sub, name, data)] of the messages in the model's order; each
        unique name must be in exactly one place."""
        st = self.state()
        for u, where in st.items():
            assert len(where) == 1, "message %r in more than one place: %r" % (
                u, [(s, n) for s, n, _ in where])
        return sorted((w[0] for w in st.values()), key=lambda x: order_key(x[1]))

    def messages(self):
        return [d for _, _, d in self.ordered()]

    def contents(self):
        """What must not change when only flags may: [(unique, data)] in order."""
        return [(unique(n), d) for _, n, d in self.ordered()]

    def deliver(self, raws, after=None):
        """Deliver raws into new/ (Dovecot and Postfix names alternating),
        later than every message there; returns their names."""
        last = max([order_key(n)[0] for _, n, _ in self.ordered()] + [after or BASE_TIME])
        names = []
        for k, raw in enumerate(raws):
            t = last + 1000 + k
            name = dovecot_new(t, 700000 + k, 9000 + k) if k % 2 == 0 else \
                postfix(t, 0x803, 0x5e6f00 + k, 800000 + k)
            self.put("new", name, raw)
            names.append(name)
        return names
