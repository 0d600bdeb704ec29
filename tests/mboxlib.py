"""Independent mbox model for the pop3d integration tests.

Nothing here looks at the server: it splits stored mbox bytes into messages,
computes what a POP3 client must receive for each message (CRLF line ends,
a stored CRLF not doubled, a missing final newline supplied), what TOP must
return, and the UIDL the contract's algorithm gives.  The corpus of tricky
messages used by the size-invariant tests lives here too.
"""

import os
import re
import subprocess
import tempfile

FROM_LINE = b"From sender@example.org Thu Nov 27 12:00:00 2025\n"


def split_lines(data):
    """Physical lines, each with its LF (the last one may lack it)."""
    lines = []
    i = 0
    n = len(data)
    while i < n:
        j = data.find(b"\n", i)
        if j < 0:
            lines.append(data[i:])
            break
        lines.append(data[i:j + 1])
        i = j + 1
    return lines


def is_blank(line):
    return line in (b"\n", b"\r\n", b"", b"\r")


class StoredMessage:
    """One message as stored: its From_ line and its raw bytes (without the
    From_ line and without the blank separator line)."""

    def __init__(self, from_line, raw):
        self.from_line = from_line
        self.raw = raw

    def __eq__(self, other):
        return (isinstance(other, StoredMessage) and self.from_line == other.from_line
                and self.raw == other.raw)

    def __repr__(self):
        r = self.raw if len(self.raw) < 80 else self.raw[:60] + b"...(%d)" % len(self.raw)
        return "StoredMessage(%r, %r)" % (self.from_line[:40], r)


def split_mbox(data):
    """Split stored mbox bytes into StoredMessage objects.

    A message starts at a "From " line at the start of the file or after a
    blank line (empty or only CR).  The blank line before the next From_
    line, and one final blank line at end of file, separate messages and
    belong to none.
    """
    lines = split_lines(data)
    starts = [i for i, l in enumerate(lines)
              if l.startswith(b"From ") and (i == 0 or is_blank(lines[i - 1]))]
    msgs = []
    for k, s in enumerate(starts):
        if k + 1 < len(starts):
            end = starts[k + 1] - 1          # exclude the separator blank line
        else:
            end = len(lines)
            if end > s + 1 and is_blank(lines[end - 1]):
                end -= 1                     # final blank line at EOF
        msgs.append(StoredMessage(lines[s], b"".join(lines[s + 1:end])))
    return msgs


def logical_lines(raw):
    """The message's lines as the client sees them, without line ends."""
    out = []
    for l in split_lines(raw):
        if l.endswith(b"\n"):
            l = l[:-1]
            if l.endswith(b"\r"):
                l = l[:-1]
        out.append(l)
    return out


def delivered(raw):
    """Octets RETR must deliver (before dot-stuffing and terminator)."""
    return b"".join(l + b"\r\n" for l in logical_lines(raw))


def top_expected(raw, k):
    """Header, the blank line and the first k body lines (CRLF)."""
    lines = logical_lines(raw)
    for i, l in enumerate(lines):
        if l == b"":
            keep = lines[:i + 1 + k]
            break
    else:
        keep = lines                 # header only: no blank line at all
    return b"".join(l + b"\r\n" for l in keep)


def dot_stuff(content):
    """What goes on the wire for RETR: dot-stuffed content plus terminator."""
    out = []
    for l in split_lines(content):
        out.append(b"." + l if l.startswith(b".") else l)
    return b"".join(out) + b".\r\n"


# Header fields never part of an mbox UIDL (mbox.c, volatile_fields).
VOLATILE_FIELDS = {b"status", b"x-status", b"x-keywords", b"x-uid", b"x-imap", b"x-imapbase",
                   b"x-mozilla-status", b"x-mozilla-status2", b"x-mozilla-keys",
                   b"content-length", b"lines", b"x-uidl"}


def uidl_source(raw, from_line=FROM_LINE):
    """The digest input of the contract's UIDL algorithm: the message as
    stored, its From_ line first, without the physical lines of the volatile
    header fields (a field's name followed at once by a colon)."""
    lines = split_lines(raw)
    hdr_end = len(lines)
    for i, l in enumerate(lines):
        if l in (b"\n", b"\r\n"):
            hdr_end = i
            break
    out = [from_line]
    skipping = False
    for i, l in enumerate(lines):
        if i < hdr_end:
            if l[:1] not in (b" ", b"\t"):
                m = re.match(rb"([^:\s]+):", l)
                skipping = m is not None and m.group(1).lower() in VOLATILE_FIELDS
            if skipping:
                continue
        out.append(l)
    return b"".join(out)


def xxh128(datas):
    """XXH3-128 of each bytes object, as Debian's xxhsum -H2 computes it (the
    reference implementation, not pop3d's)."""
    with tempfile.TemporaryDirectory(prefix="pop3d-xxh-") as d:
        paths = []
        for i, data in enumerate(datas):
            paths.append(os.path.join(d, "%d" % i))
            with open(paths[-1], "wb") as f:
                f.write(data)
        out = []
        for k in range(0, len(paths), 500):
            r = subprocess.run(["xxhsum", "-H2"] + paths[k:k + 500], capture_output=True,
                               check=True)
            out += [l.split()[0].decode() for l in r.stdout.splitlines()]
        assert len(out) == len(datas), r.stdout
        return out


def expected_uidls(raws, from_lines=None):
    """UIDLs for a list of stored messages (their From_ lines FROM_LINE
    unless given), with -2, -3 ... for byte-identical copies."""
    if from_lines is None:
        from_lines = [FROM_LINE] * len(raws)
    digests = xxh128([uidl_source(r, f) for r, f in zip(raws, from_lines)])
    seen = {}
    out = []
    for d in digests:
        seen[d] = seen.get(d, 0) + 1
        out.append(d if seen[d] == 1 else "%s-%d" % (d, seen[d]))
    return out


def build_mbox(raws, from_line=FROM_LINE, seps=None):
    """Stored mbox bytes for a list of message raws.  Each message except the
    last is followed by a blank separator line (seps[i], default LF); the last
    one too if it ends with a newline."""
    out = []
    for i, raw in enumerate(raws):
        out.append(from_line if isinstance(from_line, bytes) else from_line[i])
        out.append(raw)
        last = i == len(raws) - 1
        if not last or raw.endswith(b"\n"):
            out.append(seps[i] if seps else b"\n")
    return b"".join(out)


def message(subject, body=b"", headers=(), nl=b"\n"):
    h = b"".join(x + nl for x in headers)
    return b"Subject: " + subject + nl + h + nl + body


_BIG = None


def big_message():
    """A ~5 MB message with dot lines sprinkled in."""
    global _BIG
    if _BIG is None:
        parts = [b"Subject: big\nMessage-ID: <big@example.org>\n\n"]
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789..\n"
        total = 0
        i = 0
        while total < 5 * 1024 * 1024:
            l = (b"." + line) if i % 997 == 0 else line
            parts.append(l)
            total += len(l)
            i += 1
        _BIG = b"".join(parts)
    return _BIG


def tricky_corpus(big=True):
    """(raws, seps): tricky messages; the last one has no final newline."""
    raws = []
    seps = []

    def add(raw, sep=b"\n"):
        raws.append(raw)
        seps.append(sep)

    add(message(b"dots", b".\n..\n...three\n.x\nend\n.\n",
                headers=(b"Received: from a by b; Thu, 27 Nov 2025 12:00:00 +0000",
                         b"Message-ID: <dots@example.org>")))
    add(message(b"quoted from", b">From quoted\n>>From double quoted\nFrom\n"))
    add(message(b"unquoted from", b"line one\nFrom me to you, not a separator\nmore\n"))
    add(message(b"crlf", b"line1\r\nline2\r\n.dot crlf\r\n", nl=b"\r\n"), sep=b"\r\n")
    add(b"Subject: mixed\r\nX-Mixed: yes\n\r\nlf line\ncrlf line\r\nlf again\n")
    add(message(b"empty body", b""))
    add(b"Subject: header only\nX-Header-Only: yes\n")
    add(message(b"latin1", b"caf\xe9 na\xefve \xe0 la cr\xe8me\n"))
    add(message(b"utf8", "café naïve ☃ 日本語\n".encode("utf-8")))
    add(message(b"nul", b"before\x00after\n\x00\n\x00.\n"))
    add(message(b"long line", b"a" * 12000 + b"\n" + b"." + b"b" * 20000 + b"\nshort\n"))
    add(message(b"lone cr", b"mid\rcr\n\r leading cr\n"))
    add(message(b"blank lines", b"\n\npara\n\n\nend\n"))
    add(message(b"space from", b" From indented\n\tFrom tab\nFromage\n"))
    if big:
        add(big_message())
    add(message(b"no final newline", b"first\nlast line without newline"))
    return raws, seps
