#!/usr/bin/python3
"""tests/demo.py - `make demo` works: scripts/demo.sh serves its demo mbox on
a loopback port, curl and poplib fetch the three demo messages with the demo
credentials, and stopping the demo removes its temporary directory; and
`make demo` in a terminal stopped with Ctrl-C says "stopped" and exits 0."""
import glob, os, poplib, pty, select, signal, socket, subprocess, sys, time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok demo.%s" % name)
    else:
        failed += 1
        print("FAIL demo.%s %s" % (name, detail))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_demo_ctrl_c():
    """`make demo` on a terminal (a pty), stopped with Ctrl-C as the README
    says: it prints "stopped" and make exits 0."""
    port = free_port()
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(TOP)
        os.environ.update(DEMO_PORT=str(port), TMPDIR="/tmp")
        os.execvp("make", ["make", "-s", "demo"])
    out, up = b"", False
    deadline = time.monotonic() + 120

    def drain(wait):
        nonlocal out
        r, _, _ = select.select([fd], [], [], wait)
        if r:
            try:
                d = os.read(fd, 65536)
            except OSError:
                return False
            out += d
            return bool(d)
        return None

    while time.monotonic() < deadline and not up:
        drain(0.2)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            up = True
        except OSError:
            pass
    time.sleep(0.3)
    os.write(fd, b"\x03")                      # Ctrl-C, as typed
    end = time.monotonic() + 20
    while time.monotonic() < end and drain(1) is not False:
        pass
    try:
        _, st = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(st)
    finally:
        os.close(fd)
    text = out.decode(errors="replace")
    check("make_demo_ctrl_c", up and code == 0 and "stopped" in text.splitlines()[-1] and
          "in use?" not in text, "up=%s status %s, output ends %r" % (up, code, text[-300:]))


def main():
    port = free_port()
    before = set(glob.glob("/tmp/pop3d-demo.*"))
    env = dict(os.environ, DEMO_PORT=str(port), TMPDIR="/tmp")
    p = subprocess.Popen(["sh", "scripts/demo.sh"], cwd=TOP, env=env, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        r = subprocess.run(["curl", "-s", "--max-time", "10",
                            "pop3://demo:demo@127.0.0.1:%d/" % port],
                           capture_output=True, timeout=20)
        lines = r.stdout.decode().split()
        check("curl_list", r.returncode == 0 and len(r.stdout.splitlines()) == 3,
              "rc=%d out=%r" % (r.returncode, r.stdout[:200]))
        r = subprocess.run(["curl", "-s", "--max-time", "10",
                            "pop3://demo:demo@127.0.0.1:%d/1" % port],
                           capture_output=True, timeout=20)
        size1 = int(lines[1]) if len(lines) > 1 else -1
        check("curl_retr", r.returncode == 0 and len(r.stdout) == size1,
              "rc=%d got %d octets, LIST said %d" % (r.returncode, len(r.stdout), size1))
        c = poplib.POP3("127.0.0.1", port, timeout=10)
        c.user("demo")
        c.pass_("demo")
        n, _ = c.stat()
        msgs = [c.retr(i)[1] for i in range(1, n + 1)]
        c.quit()
        check("poplib", n == 3 and all(m for m in msgs), "stat=%d" % n)
    except Exception as e:  # a broken demo must fail the test, not the runner
        check("reachable", False, repr(e))
    finally:
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    out = p.stdout.read().decode(errors="replace")
    check("sigint_stops", p.returncode == 0 and out.rstrip().endswith("stopped") and
          "in use?" not in out, "status %s, output ends %r" % (p.returncode, out[-200:]))
    left = set(glob.glob("/tmp/pop3d-demo.*")) - before
    check("cleanup", not left, "left behind: %s" % sorted(left))
    make_demo_ctrl_c()
    left = set(glob.glob("/tmp/pop3d-demo.*")) - before
    check("cleanup_after_ctrl_c", not left, "left behind: %s" % sorted(left))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
