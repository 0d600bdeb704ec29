#!/usr/bin/python3
"""bench/idle.py - the memory of N logged-in idle POP3 sessions (issue 13):
pop3d against Dovecot, as the sum of the PSS of the sessions' processes.

    python3 bench/idle.py [--sessions 500] [--kind mbox|maildir|both]
                          [--servers pop3d,dovecot] [--settle S] [--keep]

Run as root (each user has its own uid/gid, as a real site's users do, and
pop3d allows one session per maildrop, so N sessions need N users).  Python
3 standard library only; every file is in a temporary directory, removed at
the end.  Nothing here fails on a figure: it prints them.

For each server in turn (never both at once), on 127.0.0.1:
  * N users, uid=gid from a range no account or group uses, each with its
    own small maildrop (3 messages, ~6 kB: an mbox, or a Maildir with the
    messages in cur/); each server has its own copy of the data, owned by
    the user, so neither sees what the other may have written;
  * pop3d under `systemd-socket-activate --accept --inetd`, as root, with a
    user file of sha512crypt ($6$) hashes and a state directory of its own;
  * Dovecot (`dovecot -F -c <tmp>/dovecot.conf`, its own master, as in
    bench/bench.py) with a passwd-file passdb (SHA512-CRYPT) and userdb
    giving each user the same uid/gid and maildrop, and limits raised so
    that N sessions fit: default_process_limit, default_client_limit,
    service pop3 and pop3-login process_limit, service auth and anvil
    client_limit, mail_max_userip_connections;
  * N connections are opened one after another, each USER, PASS, STAT, and
    left open and idle; after --settle seconds (short-lived processes, such
    as pop3d's hashing child and pre-login process or Dovecot's login
    processes, are gone by then) the Pss: line of /proc/PID/smaps_rollup of
    every process of the server is read and summed:
      - pop3d: every descendant of the super-server (after a plaintext login
        that is one process per session); the super-server separately;
      - Dovecot: its `pop3` processes (one per session); its master, auth,
        anvil, log, config, stats and any login processes separately;
  * then every session answers NOOP with +OK (they were logged in and alive
    when measured) and QUITs.

PSS (proportional set size) charges each page to the processes mapping it in
equal shares, so the sum over N processes that share libraries and code
counts each shared page once across them: the memory the group takes.  The
soft limit on open files is raised to the hard one (N client sockets here,
and as many in Dovecot's master).
"""

import argparse
import datetime
import grp
import os
import platform
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
import pop3lib  # noqa: E402  (crypt_hash, free_port, port_listening, wait_for)

POP3D = os.path.abspath(os.environ.get("POP3D") or os.path.join(REPO, "pop3d"))
PASSWORD = "idle-Pw-1"


def log(msg):
    print("idle: " + msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ processes

children = pop3lib.children
descendants = pop3lib.descendants


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


def rollup(pid):
    """{field: kB} from /proc/PID/smaps_rollup (Rss, Pss, ...)."""
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out


def group_sum(pids):
    pss = rss = n = 0
    for p in pids:
        r = rollup(p)
        if r:
            n += 1
            pss += r.get("Pss", 0)
            rss += r.get("Rss", 0)
    return n, pss, rss


# ------------------------------------------------------------------ data

def free_id_range(n, start=47000):
    used = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    base = start
    while any(base + k in used for k in range(n)):
        base += n
    return base


def message(i, k):
    body = "".join("line %d of a small idle-test message, user %d, message %d\n" % (j, i, k)
                   for j in range(30))
    return ("From: sender@example.org\nTo: user%d@example.org\nSubject: idle %d/%d\n"
            "Message-ID: <idle.%d.%d@example.org>\n\n%s" % (i, i, k, i, k, body)).encode()


def make_maildrops(root, base, n, kind):
    """One maildrop per user under root/u<uid>/, owned by the user."""
    os.makedirs(root, mode=0o711)
    os.chmod(root, 0o711)
    paths = []
    for i in range(n):
        uid = base + i
        d = os.path.join(root, "u%d" % uid)
        os.mkdir(d, 0o700)
        os.chown(d, uid, uid)
        if kind == "mbox":
            p = os.path.join(d, "mbox")
            with open(p, "wb") as f:
                for k in range(3):
                    f.write(b"From sender@example.org Thu Nov 27 12:00:00 2025\n"
                            + message(i, k) + b"\n")
            os.chmod(p, 0o600)
            os.chown(p, uid, uid)
            paths.append(p)
        else:
            p = os.path.join(d, "Maildir")
            for sub in ("", "new", "cur", "tmp"):
                os.mkdir(os.path.join(p, sub), 0o700)
                os.chown(os.path.join(p, sub), uid, uid)
            for k in range(3):
                f = os.path.join(p, "cur", "%d.M%dP%d.idle:2,S" % (1764244800 + k, k, i))
                with open(f, "wb") as fh:
                    fh.write(message(i, k))
                os.chown(f, uid, uid)
            paths.append(p + "/")
    return paths


# ------------------------------------------------------------------ servers

class Pop3d:
    name = "pop3d"

    def __init__(self, tmp, base, n, kind):
        self.tmp = os.path.join(tmp, "pop3d")
        os.makedirs(self.tmp)
        os.chmod(self.tmp, 0o711)
        paths = make_maildrops(os.path.join(self.tmp, "mail"), base, n, kind)
        h = pop3lib.crypt_hash(PASSWORD, "$6$")
        self.users = os.path.join(self.tmp, "users")
        with open(self.users, "w") as f:
            for i, p in enumerate(paths):
                f.write("idle%d:%s:%d:%d:idle:%s\n" % (base + i, h, base + i, base + i, p))
        os.chmod(self.users, 0o600)
        self.state = os.path.join(self.tmp, "state")
        os.mkdir(self.state, 0o700)
        self.proc = None

    def start(self):
        self.port = pop3lib.free_port()
        self.argv = ["systemd-socket-activate", "--accept", "--inetd",
                     "-l", "127.0.0.1:%d" % self.port, POP3D, "-f", self.users, "-l", self.state]
        self.log = open(os.path.join(self.tmp, "log"), "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True, close_fds=True)
        if not pop3lib.wait_for(lambda: pop3lib.port_listening(self.port), timeout=10):
            self.stop()
            raise RuntimeError("systemd-socket-activate did not listen")

    def groups(self):
        """[(label, pids)]: the sessions first, then the rest."""
        return [("pop3d sessions (every process under the super-server)",
                 descendants(self.proc.pid)),
                ("super-server (systemd-socket-activate)", [self.proc.pid])]

    def stop(self):
        if self.proc is None:
            return
        pop3lib.stop_group(self.proc)
        self.log.close()
        self.proc = None


class Dovecot:
    name = "dovecot"

    def __init__(self, tmp, base, n, kind):
        self.tmp = os.path.join(tmp, "dovecot")
        os.makedirs(self.tmp)
        os.chmod(self.tmp, 0o755)
        self.n = n
        paths = make_maildrops(os.path.join(self.tmp, "mail"), base, n, kind)
        h = pop3lib.crypt_hash(PASSWORD, "$6$")
        lines = []
        for i, p in enumerate(paths):
            uid = base + i
            home = os.path.join(self.tmp, "mail", "u%d" % uid)
            if kind == "mbox":
                loc = "mbox:%s/dovecot:INBOX=%s:INDEX=%s/index" % (home, p, home)
            else:
                loc = "maildir:%s:INDEX=%s/index:CONTROL=%s/index" % (p.rstrip("/"), home, home)
            lines.append("idle%d:{SHA512-CRYPT}%s:%d:%d::%s::userdb_mail=%s\n"
                         % (uid, h, uid, uid, home, loc))
        self.pw = os.path.join(self.tmp, "passwd")
        with open(self.pw, "w") as f:
            f.writelines(lines)
        os.chmod(self.pw, 0o644)
        self.proc = None

    def start(self):
        t = self.tmp
        self.port = pop3lib.free_port()
        lim = self.n + 100
        conf = os.path.join(t, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("""# private configuration for bench/idle.py
base_dir = {t}/run
state_dir = {t}/state
log_path = {t}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
first_valid_gid = 1
mail_fsync = never
pop3_no_flag_updates = yes
pop3_uidl_format = %08Xu%08Xv
mbox_lazy_writes = yes
default_process_limit = {lim}
default_client_limit = {clim}
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {pw}
}}
userdb {{
  driver = passwd-file
  args = {pw}
}}
protocol pop3 {{
  mail_max_userip_connections = {lim}
}}
service pop3 {{
  process_limit = {lim}
}}
service pop3-login {{
  process_limit = {lim}
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service auth {{
  client_limit = {clim}
}}
service anvil {{
  client_limit = {clim}
}}
""".format(t=t, pw=self.pw, port=self.port, lim=lim, clim=4 * lim))
        self.conf = conf
        self.argv = ["dovecot", "-F", "-c", conf]
        self.log = open(os.path.join(t, "stderr.log"), "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True)
        if not pop3lib.wait_for(lambda: pop3lib.port_listening(self.port), timeout=15):
            self.stop()
            raise RuntimeError("dovecot did not listen; see %s/dovecot.log" % t)

    def groups(self):
        procs = descendants(self.proc.pid)
        pop3 = [p for p in procs if comm(p) == "pop3"]
        other = [p for p in procs if p not in pop3]
        names = {}
        for p in other:
            names[comm(p)] = names.get(comm(p), 0) + 1
        return [("dovecot pop3 processes (one per session)", pop3),
                ("dovecot master and services (%s)" % ", ".join(
                    "%s%s" % (k, " x%d" % v if v > 1 else "") for k, v in sorted(names.items())),
                 [self.proc.pid] + other)]

    def logtext(self):
        """Its log up to the stop (not the stop's own warnings)."""
        return getattr(self, "saved_log", "")

    def stop(self):
        if self.proc is None:
            return
        try:
            with open(os.path.join(self.tmp, "dovecot.log"), "rb") as f:
                self.saved_log = f.read().decode("latin-1")
        except OSError:
            self.saved_log = ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        self.proc = None


# ------------------------------------------------------------------ sessions

class Idle:
    def __init__(self, port, user):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.s.makefile("rb")
        self.user = user

    def line(self):
        l = self.f.readline()
        if not l.endswith(b"\r\n"):
            raise RuntimeError("%s: reply %r" % (self.user, l[:100]))
        return l[:-2].decode("latin-1")

    def cmd(self, c):
        self.s.sendall(c.encode() + b"\r\n")
        return self.line()

    def login(self):
        g = self.line()
        if not g.startswith("+OK"):
            raise RuntimeError("%s: greeting %r" % (self.user, g))
        self.cmd("USER " + self.user)
        r = self.cmd("PASS " + PASSWORD)
        if not r.startswith("+OK"):
            raise RuntimeError("%s: PASS %r" % (self.user, r))
        r = self.cmd("STAT")
        if not r.startswith("+OK 3 "):
            raise RuntimeError("%s: STAT %r" % (self.user, r))

    def close(self):
        try:
            self.f.close()
            self.s.close()
        except OSError:
            pass


def measure(srv, base, n, settle):
    srv.start()
    sessions = []
    try:
        t0 = time.monotonic()
        for i in range(n):
            s = Idle(srv.port, "idle%d" % (base + i))
            sessions.append(s)
            s.login()
        t_login = time.monotonic() - t0
        time.sleep(settle)
        groups = [(label, group_sum(pids)) for label, pids in srv.groups()]
        alive = sum(1 for s in sessions if s.cmd("NOOP").startswith("+OK"))
        for s in sessions:
            try:
                s.cmd("QUIT")
            except (OSError, RuntimeError):
                pass
        return {"groups": groups, "login_s": t_login, "alive": alive}
    finally:
        for s in sessions:
            s.close()
        srv.stop()


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for l in f:
                if l.startswith("model name"):
                    cpu = l.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 1024 / 1024
    except OSError:
        mem = 0
    return "nproc %d, %s, %.1f GB RAM, kernel %s" % (os.cpu_count(), cpu, mem,
                                                      platform.release())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--kind", default="both", choices=["mbox", "maildir", "both"])
    ap.add_argument("--servers", default="pop3d,dovecot")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds between the last login and the measurement (3)")
    ap.add_argument("--keep", action="store_true")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/idle.py: run as root")
    n = opts.sessions
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * n + 100:
        sys.exit("bench/idle.py: the hard limit on open files (%d) is too low for %d sessions"
                 % (hard, n))
    kinds = ["mbox", "maildir"] if opts.kind == "both" else [opts.kind]
    servers = opts.servers.split(",")
    tmp = tempfile.mkdtemp(prefix="pop3d-idle-", dir="/tmp")
    os.chmod(tmp, 0o711)
    base = free_id_range(n)
    started = datetime.datetime.now(datetime.timezone.utc)
    res = {}
    try:
        with open("/proc/loadavg") as f:
            load0 = f.read().split()[0]
        for kind in kinds:
            for name in servers:
                cls = {"pop3d": Pop3d, "dovecot": Dovecot}[name]
                if name == "dovecot" and not shutil.which("dovecot"):
                    log("dovecot not installed (scripts/deps.sh --bench): skipped")
                    continue
                srv = cls(os.path.join(tmp, kind), base, n, kind)
                log("%s, %s: %d sessions ..." % (name, kind, n))
                res[(name, kind)] = r = measure(srv, base, n, opts.settle)
                r["argv"] = srv.argv
                if name == "dovecot":
                    bad = [l for l in srv.logtext().splitlines()
                           if "Warning" in l or "Error" in l or "Fatal" in l]
                    r["log"] = bad[:5]
        with open("/proc/loadavg") as f:
            load1 = f.read().split()[0]
    finally:
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log("kept %s" % tmp)
    print("idle sessions (bench/idle.py), %s" % started.strftime("%Y-%m-%d %H:%M UTC"))
    print("machine: %s" % machine())
    print("load average (1 min) at start %s, at end %s" % (load0, load1))
    print("%d logged-in idle sessions per server, one user (uid) and maildrop each, 3 messages "
          "per maildrop; measured %.0f s after the last login" % (n, opts.settle))
    for kind in kinds:
        print()
        print("%s maildrops:" % kind)
        print("  %-78s %5s %11s %9s %11s" % ("processes", "count", "sum PSS", "PSS/sess",
                                             "sum RSS"))
        for name in servers:
            r = res.get((name, kind))
            if not r:
                continue
            for label, (cnt, pss, rss) in r["groups"]:
                print("  %-78s %5d %8d kB %6.0f kB %8d kB" % (label[:78], cnt, pss, pss / n, rss))
            print("  (%s: %d logins in %.1f s, %d of %d sessions answered NOOP after the "
                  "measurement)" % (name, n, r["login_s"], r["alive"], n))
            for l in r.get("log", []):
                print("  dovecot log: %s" % l[:150])
        a, b = res.get(("pop3d", kind)), res.get(("dovecot", kind))
        if a and b:
            ps, ds = a["groups"][0][1][1], b["groups"][0][1][1]
            pt = sum(g[1][1] for g in a["groups"])
            dt = sum(g[1][1] for g in b["groups"])
            print("  pop3d / dovecot, session processes: %d / %d kB = %.2f (target <= 1: %s)"
                  % (ps, ds, ps / ds, "met" if ps <= ds else "NOT met"))
            print("  pop3d / dovecot, every process of the server: %d / %d kB = %.2f"
                  % (pt, dt, pt / dt))
    print()
    print("commands:")
    for kind in kinds:
        for name in servers:
            r = res.get((name, kind))
            if r:
                print("  %s" % " ".join(x if not x.startswith(tmp) else "<tmp>/" +
                                        os.path.basename(x) for x in r["argv"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
