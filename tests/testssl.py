#!/usr/bin/python3
"""testssl.sh (Debian's testssl.sh, the `testssl` command) against pop3d:
`testssl -t pop3` against STLS and plain `testssl` against POP3S, each with
the test CA of tests/tls.py added as trusted.  No finding may be rated "NOT
ok", "VULNERABLE", HIGH or CRITICAL; each run's findings of other severities
are printed as notes.  About a minute per run.

    tests/testssl.py

Prints "ok NAME"/"FAIL NAME" per run and "N passed, N failed"."""

import sys
sys.dont_write_bytecode = True

import json
import os
import shutil
import signal
import subprocess
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as R                           # noqa: E402
import tls as T                           # noqa: E402


class Testssl(T.TlsBase):

    def run_testssl(self, implicit):
        if not shutil.which("testssl"):
            self.fail("testssl is not installed (scripts/deps.sh installs testssl.sh)")
        self.alice()
        act = self.e.activate(self.tls(kind="ec", implicit=implicit, extra=["-D", "0"]))
        js = os.path.join(self.e.dir, "testssl.json")
        argv = ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--add-ca",
                self.c.ca, "--jsonfile", js, "--connect-timeout", "10",
                "--openssl-timeout", "10"]
        if not implicit:
            argv += ["-t", "pop3"]
        argv.append("localhost:%d" % act.port)
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, timeout=400, env=dict(
            os.environ, HOME=self.e.dir))
        text = r.stdout.decode("utf-8", "replace")
        with open(js) as f:
            findings = json.load(f)
        bad = [l.strip() for l in text.splitlines() if "NOT ok" in l or "VULNERABLE" in l]
        bad += ["%s: %s (%s)" % (f["id"], f["finding"], f["severity"]) for f in findings
                if f.get("severity") in ("HIGH", "CRITICAL")]
        self.assertEqual(bad, [], "testssl findings:\n" + text[-4000:])
        notes = sorted({"%s %s" % (f["severity"], f["id"]) for f in findings
                        if f.get("severity") in ("LOW", "MEDIUM", "WARN")})
        print("#   testssl %s: %d findings in %.0f s; LOW/MEDIUM/WARN: %s"
              % ("POP3S" if implicit else "STLS", len(findings), time.monotonic() - t0,
                 ", ".join(notes) or "none"))

    def test_stls(self):
        self.run_testssl(False)

    def test_pop3s(self):
        self.run_testssl(True)


def main():
    signal.signal(signal.SIGALRM, lambda *a: None)      # no per-test alarm: testssl is slow
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    R.TEST_TIMEOUT = 450
    print("# testssl.sh against pop3d: %s" % R.POP3D)
    tests = list(R.iter_tests(unittest.TestLoader().loadTestsFromModule(sys.modules[__name__])))
    tests = [t for t in tests if type(t).__name__ == "Testssl"]
    res = R.Result()
    t0 = time.monotonic()
    try:
        for t in tests:
            t.run(res)
    finally:
        if T.CERTS is not None:
            T.CERTS.cleanup()
    return res.summary(time.monotonic() - t0)


if __name__ == "__main__":
    sys.exit(main())
