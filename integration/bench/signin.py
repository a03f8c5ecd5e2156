"""Sign-in rows for bench.py (TESTS=negotiate_signin): Kerberos sign-ins per second.

Each connection carries a fresh SPNEGO token — a new GSS context, so an AP-REQ
with its own authenticator, as a browser sends on a new connection — for one
GET (absolute form, to nginx on loopback), `Connection: close`, then the proxy
closes. Gatehouse (`[auth.negotiate]`, libgssapi, `max_concurrent` GSS
validations) against Squid 5.7 (`negotiate_kerberos_auth -k KEYTAB -s SPN`,
the same number of helper processes), same keytab, same lab MIT KDC
(integration/lab/kdc), each with its own replay-cache directory (MIT's file
rcache, on as shipped), both logging every transaction to a file.

The client (`loadgen negotiate`, MIT's initiator through libgssapi) makes the
tokens before its clock starts, from one `kinit` + `kvno` into a private
ccache, checks they are distinct, and spends them within seconds (the
acceptors allow 5 minutes of skew; the ticket lives 10 h). Counted: 200s
only, each checked against nginx's log. CPU per sign-in: utime + stime from
/proc of the proxy process — for Squid, its master, its worker, the helpers
and the log daemon (every process whose command line names its directory).
KDC operations per sign-in: AS_REQ and TGS_REQ lines in the KDC's log while
a proxy was measured (an acceptor with a keytab needs none).

Called by bench.py with itself as `b` (bench.py runs as __main__, so it is
not imported here: its helpers and results are the running ones).
"""
import os, re, shutil, subprocess, sys, time

# Gatehouse's default auth.negotiate.max_concurrent; Squid gets as many helpers.
HELPERS = int(os.environ.get("NEG_HELPERS", "16"))
# Tokens made per measured second: the run stops early (and says so) if a proxy
# signs in faster than this; the rate is then taken over the shorter window.
TOKENS_PER_S = int(os.environ.get("NEG_TOKENS_PER_S", "6000"))
SPN = "HTTP/proxy.example.test@EXAMPLE.TEST"
SERVICE = "HTTP@proxy.example.test"
USER = "alice"


def kdc(b):
    """The lab KDC, one kinit + kvno into a private ccache; returns the client's env."""
    lab = os.path.join(b.ROOT, "integration/lab/kdc")
    d = f"{b.work}/kdc"
    b.sh([lab, "init", d, str(b.P["kdc"])])
    b.start([lab, "run", d], "kdc")
    b.wait_port(b.P["kdc"])
    os.makedirs(f"{b.work}/neg-client", exist_ok=True)
    env = dict(os.environ, KRB5_CONFIG=f"{d}/krb5.conf", KRB5CCNAME=f"FILE:{b.work}/neg-client/cc")
    subprocess.run(["kinit", USER], input=f"{USER}-pw\n", env=env, check=True, capture_output=True, text=True)
    # The service ticket now, so no measured window holds the client's TGS-REQ.
    b.sh(["kvno", SPN], env=env)
    return env


def kdc_ops(b):
    """(AS_REQ, TGS_REQ) lines in the KDC's log so far."""
    text = open(f"{b.work}/kdc/kdc.log", errors="replace").read()
    return text.count("AS_REQ"), text.count("TGS_REQ")


def gatehouse(b, env):
    users = f"{b.work}/neg-users.toml"
    b.sh([b.GH, "passwd", "--users", users, USER], input="unused-password\n")
    open(f"{b.work}/neg-local.toml", "w").write(
        f'name = "local"\nkind = "local"\nusers_file = "{users}"\ndomains = ["EXAMPLE.TEST"]\n')
    os.makedirs(f"{b.work}/gh_neg-rcache", exist_ok=True)
    extra = f"""schemes = ["negotiate"]
[auth.negotiate]
keytab = "{b.work}/kdc/http.keytab"
principal = "{SPN}"
max_concurrent = {HELPERS}
"""
    genv = dict(os.environ, KRB5_CONFIG=env["KRB5_CONFIG"], KRB5RCACHEDIR=f"{b.work}/gh_neg-rcache")
    return b.gatehouse("gh_neg", b.P["gh_neg"], True, realm=f"{b.work}/neg-local.toml", extra=extra, env=genv)


def squid(b, env):
    d = f"{b.work}/sq_neg"
    os.makedirs(f"{d}/rcache", exist_ok=True)
    shutil.copy(f"{b.work}/kdc/http.keytab", f"{d}/http.keytab")
    subprocess.run(["chown", "-R", "proxy:proxy", d], check=True)
    os.chmod(f"{d}/http.keytab", 0o600)
    extra = f"""auth_param negotiate program /usr/lib/squid/negotiate_kerberos_auth -k {d}/http.keytab -s {SPN} -c {d}/rcache
auth_param negotiate children {HELPERS} startup={HELPERS} idle=1
auth_param negotiate keep_alive on
acl authed proxy_auth REQUIRED
http_access deny !authed
pinger_enable off
"""
    b.squid("sq_neg", b.P["sq_neg"], 1, False, extra=extra, env={**os.environ, "KRB5_CONFIG": env["KRB5_CONFIG"]})
    # Wait for every helper (startup=HELPERS), so none is born inside a measured window.
    end = time.time() + 30
    while len(helpers(b)) < HELPERS and time.time() < end:
        time.sleep(0.1)


def helpers(b):
    out = subprocess.run(["pgrep", "-f", f"negotiate_kerberos_auth.* -k {b.work}/sq_neg/"], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def squid_all(b):
    out = subprocess.run(["pgrep", "-f", f"{b.work}/sq_neg/"], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def negotiate_signin(b):
    env = kdc(b)
    gh_pid = gatehouse(b, env)
    squid(b, env)
    time.sleep(1)
    url = f"http://127.0.0.1:{b.P['origin']}/1k.bin"
    proxies = (("gatehouse", b.P["gh_neg"], lambda: [gh_pid], lambda: []),
               ("squid_w1", b.P["sq_neg"], lambda: squid_all(b), lambda: helpers(b)))
    # The replay caches are on: one token twice, the second refused.
    for who, port, *_ in proxies:
        out = b.loadgen("negotiate-replay", f"127.0.0.1:{port}", url, SERVICE, env=env).split()
        b.results.setdefault("negotiate_replay", {})[who] = [{"first": out[1], "second": out[3]} if len(out) == 4 else {"first": "?", "second": "?"}]
    for rep in range(b.REPS):
        print(f"# negotiate_signin repetition {rep + 1}/{b.REPS}", file=sys.stderr)
        for who, port, pids_of, helpers_of in proxies:
            pids, hpids = pids_of(), helpers_of()
            c0, h0, k0, o0 = b.cpu_seconds(pids), b.cpu_seconds(hpids), kdc_ops(b), b.origin_count()
            out = b.loadgen("negotiate", f"127.0.0.1:{port}", url, SERVICE, TOKENS_PER_S * b.DUR, b.CONNS, b.DUR,
                            env=env)
            m = re.search(r"rate ([\d.]+) done (\d+) errors (\d+) seconds ([\d.]+) tokens (\d+) used (\d+) "
                          r"exhausted (\w+) gen_rate (\d+)", out)
            if not m:
                print(f"# negotiate_signin {who}: {out.strip()[-300:]}", file=sys.stderr)
                b.record("negotiate_signin", who, {"rate": 0, "done": 0, "errors": 1, "cpu_us": 0, "helper_cpu_us": 0,
                                                    "kdc_as": 0, "kdc_tgs": 0, "arrived": 0, "exhausted": False})
                continue
            done = int(m.group(2))
            k1 = kdc_ops(b)
            r = {"rate": float(m.group(1)), "done": done, "errors": int(m.group(3)), "seconds": float(m.group(4)),
                 "tokens": int(m.group(5)), "exhausted": m.group(7) == "true", "tokens_per_s_made": int(m.group(8)),
                 "cpu_us": (b.cpu_seconds(pids) - c0) * 1e6 / max(done, 1),
                 "helper_cpu_us": (b.cpu_seconds(hpids) - h0) * 1e6 / max(done, 1),
                 "kdc_as": k1[0] - k0[0], "kdc_tgs": k1[1] - k0[1], "arrived": b.origin_count() - o0,
                 "helpers": len(hpids) if hpids else HELPERS}
            if r["errors"]:
                print(f"# negotiate_signin {who}: {r['errors']} failed sign-ins", file=sys.stderr)
            b.record("negotiate_signin", who, r)


def report(b, lines):
    res = b.results.get("negotiate_signin")
    if not res or "gatehouse" not in res or "squid_w1" not in res:
        return
    lines += ["", f"Negotiate sign-ins: a new connection per sign-in, each with a fresh Kerberos AP-REQ (SPNEGO, "
              f"lab MIT KDC, one GET then close), {b.CONNS} clients; Gatehouse max_concurrent = {HELPERS}, "
              f"Squid negotiate_kerberos_auth × {HELPERS}; same keytab, replay caches on", "",
              "| metric | gatehouse | squid w1 (with helpers) | gatehouse / squid |", "|---|---|---|---|"]
    for key, label, fmt in (("rate", "sign-ins/s", "{:.0f}"), ("cpu_us", "proxy CPU µs per sign-in", "{:.0f}"),
                            ("helper_cpu_us", "of which in helpers", "{:.0f}"),
                            ("kdc_ops", "KDC requests (AS+TGS) per sign-in", "{:.3f}"),
                            ("errors", "failed sign-ins", "{:.0f}")):
        if key == "kdc_ops":
            for rs in res.values():
                for r in rs:
                    r["kdc_ops"] = (r["kdc_as"] + r["kdc_tgs"]) / max(r["done"], 1)
        g, q = b.med("negotiate_signin", "gatehouse", key), b.med("negotiate_signin", "squid_w1", key)
        ratio = f"{g[0] / q[0]:.2f}×" if q[0] and key in ("rate", "cpu_us") else "–"
        cell = lambda v: f"{fmt.format(v[0])} ({fmt.format(v[1])}–{fmt.format(v[2])})"
        # Gatehouse validates in-process (its blocking threads): no helpers to split out.
        lines.append(f"| {label} | {'– (in-process)' if key == 'helper_cpu_us' else cell(g)} | {cell(q)} | {ratio} |")
    short = [w for w, rs in res.items() for r in rs if r["arrived"] < r["done"]]
    ran_out = [w for w, rs in res.items() for r in rs if r["exhausted"]]
    rp = b.results.get("negotiate_replay", {})
    lines.append("Replay check (one token on two connections): " + "; ".join(
        f"{w} {r[0]['first']} then {r[0]['second']}" for w, r in rp.items()) + ".")
    lines.append("Origin check (nginx log): " + ("every counted sign-in's GET arrived." if not short else "short: " + ", ".join(short))
                 + ("" if not ran_out else f" Tokens ran out before the window ended for: {', '.join(ran_out)} "
                    "(rate taken over the shorter window; raise NEG_TOKENS_PER_S)."))
